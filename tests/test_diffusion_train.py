"""The GATE pixel head through the trainer on fake feature directories in the extraction job's
layout: one informative and one noise variant; the aggregator learns to use the first."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from configs.diffusion import gate as gate_config
from ml_pipelines.data import records
from ml_pipelines.data.diffusion_features import image_features
from models.diffusion.heads import majority_vote


def _write_variant(root, name, labels, informative, rng):
  d = os.path.join(root, name)
  for split, ys in labels.items():
    def examples():
      for i, y in enumerate(ys):
        signal = np.eye(4, dtype=np.float32)[y[::2, ::2]] * 4.0 if informative else 0.0
        yield {"tap-a": (signal + rng.normal(size=(4, 4, 4))).astype(np.float16),
               "name": np.asarray(f"img{i}.png"), "label": y}
    records.write(d, split, examples())
  with open(os.path.join(d, "features.json"), "w") as f:
    json.dump({"order": ["tap-a"]}, f)
  return d


def test_gate_pixel_head_trains_and_votes(tmp_path):
  from ml_pipelines import train
  rng = np.random.default_rng(0)
  def blocks(n):  # 2x2 blocks of 4 classes on an 8x8 grid
    return np.repeat(np.repeat(rng.integers(0, 4, (n, 4, 4)), 2, 1), 2, 2).astype(np.uint8)
  labels = {"train": blocks(6), "test": blocks(3)}
  dirs = (_write_variant(tmp_path, "plain", labels, True, rng),
          _write_variant(tmp_path, "noise", labels, False, rng))
  config = gate_config.get_config("tiny:4,2")
  config.data.feature_dirs = dirs
  config.model.members = 3
  out = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert out["eval/mIoU"] > 0.8


def test_feature_resize_matches_torch_bilinear_and_vote_is_the_mode():
  x = np.random.default_rng(1).normal(size=(4, 5, 3)).astype(np.float32)
  got = image_features({"a": x, "b": x[..., :1]}, ["a", "b"], 8)
  want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], (8, 8),
                                         mode="bilinear").numpy()[0].transpose(1, 2, 0)
  np.testing.assert_allclose(got[..., :3], want, atol=1e-5)
  np.testing.assert_allclose(got[..., 3:], want[..., :1], atol=1e-5)
  logits = np.random.default_rng(2).normal(size=(5, 50, 3))
  votes = logits.argmax(-1)
  mode = np.array([np.bincount(votes[:, i], minlength=3).argmax() for i in range(50)])
  np.testing.assert_array_equal(majority_vote(logits), mode)


def test_pool_and_reshuffle_split_sizes_disjointness_determinism(tmp_path):
  """`pool_seed`: train + test pooled and reshuffled as the GATE code's `shuffle_split` (Python's
  `random.shuffle` after `random.seed`), train count kept; images are told apart by their labels."""
  import random
  from ml_pipelines import data
  from ml_pipelines.data.diffusion_features import pooled_split
  from ml_pipelines.trainer import config as config_lib
  pooled = [("train", i) for i in range(5)] + [("test", j) for j in range(7)]
  random.seed(3)
  random.shuffle(pooled)  # the official two lines
  assert pooled_split(5, 7, 3) == {"train": pooled[:5], "test": pooled[5:]}
  assert pooled_split(5, 7, 3) != pooled_split(5, 7, 4)
  rng = np.random.default_rng(0)
  ids = {"train": np.arange(5), "test": np.arange(5, 12)}  # label value = image id
  labels = {s: np.repeat(v, 64).reshape(-1, 8, 8).astype(np.uint8) for s, v in ids.items()}
  config = config_lib.override(gate_config.get_config("tiny:4,1"), ["data.pool_seed=3"])
  config.data.feature_dirs = (_write_variant(tmp_path, "plain", labels, False, rng),)
  got = {s: np.unique(data.get("diffusion_pixels")(config.data, s).source.arrays["label"])
         for s in ("train", "test")}
  assert len(got["train"]) == 5 and len(got["test"]) == 7
  assert set(got["train"]) | set(got["test"]) == set(range(12))
  want = {s: sorted(i + (5 if src == "test" else 0) for src, i in v)
          for s, v in pooled_split(5, 7, 3).items()}
  assert {s: sorted(v.tolist()) for s, v in got.items()} == want


def test_segmentation_head_trains_on_fake_ade20k_layout(tmp_path):
  """gate.py:seg_tiny (the ade20k config's model, task and data at toy sizes) on three variants'
  extraction directories and an ADEChallengeData2016 directory of 16 px images and masks: the
  masks are matched to the features by file name and resized; the loss falls and mIoU is high."""
  import json as json_lib
  from PIL import Image
  from ml_pipelines import train
  from models.diffusion.taps import nearest_resize
  rng = np.random.default_rng(0)
  root = tmp_path / "ADEChallengeData2016"
  levels = {"up-level0-upsampler-out": (2, 4), "up-level1-upsampler-out": (4, 4),
            "up-level2-upsampler-out": (8, 2)}
  per_split = {}
  for split, sub, n in (("train", "training", 8), ("validation", "validation", 8)):
    (root / "images" / sub).mkdir(parents=True)
    (root / "annotations" / sub).mkdir(parents=True)
    # 32 px, 3 classes in 2x2 blocks: the decode head predicts at the coarsest level (2x2 here)
    masks = np.repeat(np.repeat(rng.integers(0, 3, (n, 2, 2)), 16, 1), 16, 2)
    for i, m in enumerate(masks):
      Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(
          root / "images" / sub / f"ADE_{sub}_{i}.jpg")
      Image.fromarray((m + 1).astype(np.uint8)).save(  # 0 is "other" in ADE20K's masks
          root / "annotations" / sub / f"ADE_{sub}_{i}.png")
    per_split[split] = masks
  dirs = []
  for v in range(3):
    d = str(tmp_path / f"variant{v}")
    for split, masks in per_split.items():
      sub = {"train": "training", "validation": "validation"}[split]
      def examples():
        for i, m in enumerate(masks):
          onehot = np.eye(4, dtype=np.float32)[m][None]
          ex = {"name": np.asarray(f"ADE_{sub}_{i}.jpg")}
          for tap, (size, c) in levels.items():
            signal = np.asarray(nearest_resize(onehot, size))[0, ..., :c] * (3.0 if v == 0 else 0)
            ex[tap] = (signal + rng.normal(size=(size, size, c))).astype(np.float16)
          yield ex
      records.write(d, split, examples())
    with open(os.path.join(d, "features.json"), "w") as f:
      json_lib.dump({"shapes": {t: [s, s, c] for t, (s, c) in levels.items()},
                     "order": list(levels)}, f)
    dirs.append(d)
  config = gate_config.get_config("seg_tiny:3")
  config.data.update(dict(feature_dirs=tuple(dirs), data_dir=str(root)))
  out = train.train_and_evaluate(config, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert losses[-1] < 0.7 * losses[0], losses
  assert out["eval/mIoU"] > 0.5, out

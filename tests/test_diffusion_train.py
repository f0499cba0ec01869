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

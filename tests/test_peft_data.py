"""FGVC (VPT json splits) and VTAB-1k (800/200 lists -> ArrayRecord) on tiny fakes written in the
real layouts, and SNELL trained through the trainer on the fake VTAB task."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

import models

from configs.peft import snell
from ml_pipelines import data, train
from ml_pipelines.data.imagenet import MEAN, STD
from ml_pipelines.prep import vtab as prep_vtab

def _flat(tree):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def _image(path, colour, size=(40, 30)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", size, colour).save(path)


def _expected(colour):
  return (np.asarray(colour, np.float32) - MEAN) / STD


def _fake_fgvc(root):
  """CUB in the VPT layout: images/<class dir>/<file>, class ids 1-based and not contiguous."""
  ids = [1, 5, 9]
  splits = {"train": 2, "val": 1, "test": 1}
  for split, per_class in splits.items():
    anno = {}
    for c, cid in enumerate(ids):
      for j in range(per_class):
        rel = f"{cid:03d}.class/{split}_{j}.png"
        _image(os.path.join(root, "images", rel), COLOURS[c])
        anno[rel] = cid
    with open(os.path.join(root, f"{split}.json"), "w") as f:
      json.dump(anno, f)


def test_fgvc_manual_reads_vpt_splits(tmp_path):
  root = str(tmp_path / "cub")
  _fake_fgvc(root)
  cfg = {"dataset": "cub", "source": "manual", "data_dir": root, "image_size": 16}
  train_ds = data.get("fgvc")(cfg, "train")
  test_ds = data.get("fgvc")(cfg, "test")
  assert len(train_ds.source) == 6 and len(test_ds.source) == 3
  assert len(data.get("fgvc")(cfg, "trainval").source) == 9
  assert train_ds.info["num_classes"] == 200
  for i in range(3):
    ex = test_ds.eval_preprocess(test_ds.source[i])
    assert ex["label"] == i  # ids 1, 5, 9 -> 0, 1, 2 (the official sorted-id map)
    assert ex["image"].shape == (16, 16, 3)
    np.testing.assert_allclose(ex["image"], np.broadcast_to(_expected(COLOURS[i]), (16, 16, 3)),
                               atol=1e-5)
  ex = train_ds.preprocess(train_ds.source[0], np.random.default_rng(0))
  assert ex["image"].shape == (16, 16, 3) and ex["label"] == 0
  with pytest.raises(FileNotFoundError, match="VPT split files"):
    data.get("fgvc")({"dataset": "nabirds", "data_dir": str(tmp_path / "none")}, "train")
  with pytest.raises(ValueError, match="no TFDS builder"):
    data.get("fgvc")({"dataset": "cars", "source": "tfds"}, "train")


def _fake_vtab(root, task="cifar"):
  lists = {"train800": [0, 1, 2, 0, 1, 2], "val200": [1, 2], "test": [2, 1, 0]}
  lists["train800val200"] = lists["train800"] + lists["val200"]
  for split, labels in lists.items():
    lines = []
    for j, y in enumerate(labels):
      rel = f"images/{split}_{j}.png"
      _image(os.path.join(root, task, rel), COLOURS[y])
      lines.append(f"{rel} {y}")
    with open(os.path.join(root, task, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  return lists


def test_vtab_prep_and_dataset(tmp_path):
  lists = _fake_vtab(str(tmp_path / "vtab-1k"))
  out = str(tmp_path / "records")
  prep_vtab.main([f"--source_dir={tmp_path / 'vtab-1k'}", f"--out_dir={out}", "--tasks=cifar",
                  "--image_size=16"])
  cfg = {"task": "cifar", "data_dir": out, "image_size": 16}
  for split, labels in lists.items():
    ds = data.get("vtab")(cfg, split)
    assert len(ds.source) == len(labels) and ds.info["num_classes"] == 100
    for i, y in enumerate(labels):
      ex = ds.eval_preprocess(ds.source[i])
      assert ex["label"] == y
      np.testing.assert_allclose(ex["image"], np.broadcast_to(_expected(COLOURS[y]), (16, 16, 3)),
                                 atol=1e-5)
  with pytest.raises(ValueError, match="valid tasks: caltech101, cifar, dtd, .*smallnorb_ele"):
    data.get("vtab")({"task": "cifar10", "data_dir": out}, "test")
  with pytest.raises(FileNotFoundError, match="ml_pipelines.prep.vtab"):
    data.get("vtab")({"task": "dtd", "data_dir": out}, "test")


def test_snell_trains_on_a_vtab_layout(tmp_path):
  """configs/peft/snell.py:vtab_cifar end to end on the fake task (tiny ViT, 4 steps): only the
  adapters, the new head and the class token train; the backbone stays bit-identical and has no
  optimizer state."""
  _fake_vtab(str(tmp_path / "vtab-1k"))
  out = str(tmp_path / "records")
  prep_vtab.prepare_task(str(tmp_path / "vtab-1k"), out, "cifar", size=16)
  c = snell.get_config("vtab_cifar,4")
  c.data.data_dir, c.data.image_size = out, 16
  c.model.update(dict(embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=16))
  c.batch_size, c.eval_batch_size, c.total_steps = 8, 8, 4
  c.eval_every, c.checkpoint_every, c.log_every = 4, 0, 2
  c.optimizer.warmup_steps = 0
  init = _flat(nnx.to_pure_dict(nnx.state(models.build(c.model, seed=c.seed), nnx.Param)))
  state = train.train_and_evaluate(c, str(tmp_path / "run"))["state"]
  assert int(state["step"]) == 4
  assert state["params"]["head"]["kernel"].shape == (16, 100)
  trainable, frozen = _flat(state["params"]), _flat(state["frozen"])
  assert all(k.startswith(("head/", "cls_token")) or "/adapter_" in k for k in trainable)
  assert {"cls_token", "head/kernel", "blocks/0/attn/adapter_q/a",
          "blocks/0/mlp/adapter_fc2/b"} <= set(trainable)
  assert not any(k.startswith("head/") or "adapter_" in k for k in frozen)
  for k, v in frozen.items():
    np.testing.assert_array_equal(v, init[k], err_msg=k)  # the backbone did not move
  for k in ("blocks/0/attn/adapter_q/a", "head/kernel"):
    assert np.abs(trainable[k] - init[k]).max() > 0, k
  # AdamW's two moments for exactly the trainable values, nothing for the frozen ones.
  moments = sum(x.nbytes for x in jax.tree_util.tree_leaves(state["opt_state"]) if x.ndim)
  assert moments == 2 * sum(v.nbytes for v in trainable.values())

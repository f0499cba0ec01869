"""Segmentation family: sliding-window inference and per-image confusion matrices against NumPy
references, the dataset builders on fakes in each real layout (with their two input errors), and
AUCSeg training through the trainer with a bit-exact resume of the T-Memory Bank."""
from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ml_pipelines import data
from ml_pipelines.evaluators import segmentation as seg_eval
from ml_pipelines.tasks import segmentation as seg_task


def test_slide_logits_matches_mmseg_loop():
  """mmseg `slide_inference` written out with NumPy loops, on a window function whose output
  depends on the window (minus its mean), so overlaps must be averaged correctly."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 11, 13, 3)).astype(np.float32)

  def apply(w):  # logits at half resolution, as a decoder would give
    w = w - w.mean(axis=(1, 2), keepdims=True)
    return w[:, ::2, ::2]
  ours = seg_task.slide_logits(apply, jnp.asarray(x), (6, 8), (4, 5), 3)
  crop, stride = (6, 8), (4, 5)
  preds, count = np.zeros_like(x), np.zeros(x.shape[1:3])
  h_grids = max(11 - crop[0] + stride[0] - 1, 0) // stride[0] + 1
  w_grids = max(13 - crop[1] + stride[1] - 1, 0) // stride[1] + 1
  for hi in range(h_grids):
    for wi in range(w_grids):
      y1, x1 = hi * stride[0], wi * stride[1]
      y2, x2 = min(y1 + crop[0], 11), min(x1 + crop[1], 13)
      y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
      small = np.asarray(apply(jnp.asarray(x[:, y1:y2, x1:x2])))
      up = jax.image.resize(small, (2, y2 - y1, x2 - x1, 3), "bilinear", antialias=False)
      preds[:, y1:y2, x1:x2] += np.asarray(up)
      count[y1:y2, x1:x2] += 1
  np.testing.assert_allclose(ours, preds / count[None, :, :, None], atol=1e-6)


def test_confusion_sums_to_evaluator_matrix():
  rng = np.random.default_rng(0)
  labels = rng.choice([0, 1, 2, 3, 255], size=(3, 7, 5))
  pred = rng.integers(0, 4, size=(3, 7, 5))
  cm = np.asarray(seg_task.confusion(jnp.asarray(labels), jnp.asarray(pred), 4)).sum(0)
  np.testing.assert_array_equal(cm, seg_eval.update(np.zeros((4, 4), np.int64), labels, pred))


def _png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _fake_layouts(root, rng, bad=None):
  """Two images per dataset in the official directory layouts (ADE20K raw labels 0..150)."""
  img = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # noqa: E731
  for i in range(2):
    _png(f"{root}/ade/images/training/ADE_train_{i}.jpg", img(40, 60))
    _png(f"{root}/ade/annotations/training/ADE_train_{i}.png",
         rng.integers(0, 151, (40, 60), dtype=np.uint8))
    _png(f"{root}/city/leftImg8bit/train/aachen/a_{i}_leftImg8bit.png", img(32, 64))
    _png(f"{root}/city/gtFine/train/aachen/a_{i}_gtFine_labelTrainIds.png",
         rng.choice([0, 5, 18, 255], (32, 64)).astype(np.uint8))
    _png(f"{root}/coco/images/train2017/{i:012d}.jpg", img(30, 40))
    mask = rng.integers(0, 171, (30, 40), dtype=np.uint8)
    if bad == "value" and i == 1:
      mask[0, 0] = 200
    if bad == "size" and i == 1:
      mask = mask[:, :-1]
    _png(f"{root}/coco/annotations/train2017/{i:012d}_labelTrainIds.png", mask)


def _config(**kw):
  import ml_collections
  return ml_collections.ConfigDict(dict(train_split="train", crop_size=(24, 24), **kw))


def test_builders_read_the_official_layouts(tmp_path):
  _fake_layouts(tmp_path, np.random.default_rng(0))
  for name, sub, classes in (("ade20k", "ade", 150), ("cityscapes", "city", 19),
                             ("coco_stuff164k", "coco", 171)):
    ds = data.get(name)(_config(name=name, data_dir=str(tmp_path / sub), scale=(64, 32)), "train")
    ex = ds.preprocess(ds.source[1], np.random.default_rng(0))
    assert ex["image"].shape == (24, 24, 3) and ex["label"].shape == (24, 24)
    kept = ex["label"][ex["label"] != 255]
    assert kept.min() >= 0 and kept.max() < classes
  raw = np.asarray(Image.open(tmp_path / "ade/annotations/training/ADE_train_0.png")).astype(int)
  ade = data.get("ade20k")(_config(name="ade20k", data_dir=str(tmp_path / "ade")), "train")
  np.testing.assert_array_equal(ade.source[0]["mask"], np.where(raw == 0, 255, raw - 1))


@pytest.mark.parametrize("bad,message",
                         [("value", "are not class ids"), ("size", "differ in size")])
def test_builders_reject_bad_masks(tmp_path, bad, message):
  _fake_layouts(tmp_path, np.random.default_rng(0), bad=bad)
  ds = data.get("coco_stuff164k")(_config(name="coco_stuff164k", data_dir=str(tmp_path / "coco")),
                                  "train")
  ds.preprocess(ds.source[0], np.random.default_rng(0))
  with pytest.raises(ValueError, match=message) as e:
    ds.preprocess(ds.source[1], np.random.default_rng(0))
  assert "000000000001.jpg" in str(e.value)


def _digits_config(total_steps):
  from ml_pipelines.trainer import config as config_lib
  c = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "segmentation",
                                   "aucseg.py") + ":digits")
  c.total_steps, c.batch_size, c.eval_batch_size = total_steps, 8, 32
  c.log_every, c.eval_every, c.checkpoint_every = total_steps, total_steps, 2
  c.data.size, c.data.num_train, c.data.num_test = 32, 48, 32
  c.model.backbone.width, c.model.channels = 8, 16
  c.task.bank.memory_size = 2
  c.optimizer.warmup_steps = 1
  return c


@pytest.mark.slow
def test_aucseg_trains_and_resumes_exactly_with_the_bank(tmp_path):
  """4 steps of CE + AUC + bank; a run resumed from the step-2 checkpoint ends with the same bank
  and parameters; the bank holds pasted tail classes (count > 0) and evaluation reports mIoU."""
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    _train_and_resume(tmp_path)
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def _train_and_resume(tmp_path):
  from ml_pipelines import train
  c = _digits_config(4)
  a = train.train_and_evaluate(c, str(tmp_path / "full"))
  bank = jax.tree.map(np.asarray, a["state"]["extra"]["bank"])
  assert bank["count"].sum() > 0 and bank["masks"].any()
  assert 0.0 < a["eval/mIoU"] < 1.0 and "eval/mIoU_tail" in a
  assert os.path.exists(tmp_path / "full" / "per_class_iou_4.json")
  os.makedirs(tmp_path / "part" / "checkpoints")
  shutil.copytree(tmp_path / "full" / "checkpoints" / "2", tmp_path / "part" / "checkpoints" / "2")
  b = train.train_and_evaluate(c, str(tmp_path / "part"))
  jax.tree.map(np.testing.assert_array_equal, a["state"]["extra"], b["state"]["extra"])
  jax.tree.map(np.testing.assert_array_equal, a["state"]["params"], b["state"]["params"])

"""Semantic segmentation: cross-entropy, optionally AUCSeg's AUC loss and T-Memory Bank; mIoU.

Batches hold `image [B, H, W, 3]` and `label [B, H, W]` (255 = ignore). Training (MMSegmentation
v0.24 decode-head loss, as AUCSeg runs it): logits resized bilinearly to the label size;

    L = CE + auc_weight * L_AUC

with CE the softmax cross-entropy averaged over *all* pixels, ignored ones counting 0 (mmseg's
`CrossEntropyLoss` with `avg_non_ignore=False`, its v0.24 default) and L_AUC
`losses.aucseg.auc_loss`
(AUCSeg, arXiv 2409.20398, Eq. 5; weight 4 on ADE20K, 1 on Cityscapes / COCO-Stuff). With `bank`
set, each training batch first goes through the T-Memory Bank (`data.segmentation_bank`) image by
image; the bank is the task state (`extra["bank"]`, checkpointed, so a resumed run continues
exactly), its random choices drawn from the step key.

Evaluation: `inference="whole"` runs the model on the whole (fixed-size) image; `"slide"` averages
the logits of `crop_size` windows at `stride` (mmseg `slide_inference`). The confusion matrix is
accumulated over the split (`evaluators.segmentation`): mIoU, pixel accuracy, head / tail mIoU over
`tail_classes` (a list, or a dataset name with an official list: "ade20k", "cityscapes",
"coco_stuff164k"; default the dataset's `info["tail_classes"]`); per-class IoUs go to
`<workdir>/per_class_iou_<step>.json`.

Options (config.task): auc_weight (0 = CE only), auc_surrogate, auc_transform, auc_gamma,
bank ({tail, memory_size, p_sample, p_resize}; tail a list or dataset name; None = off),
tail_classes, inference, crop_size, stride, ignore_index.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from losses import aucseg
from ml_pipelines import tasks
from ml_pipelines.data import segmentation_bank as sb
from ml_pipelines.evaluators import segmentation as seg_eval
from ml_pipelines.tasks.base import Task
from models.segmenter import resize_bilinear


def slide_windows(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]):
  """mmseg `slide_inference` windows `(y1, y2, x1, x2)`: a grid at `stride`, the last window of
  each axis moved back to end at the border."""
  (ch, cw), (sh, sw) = crop, stride
  rows = max(height - ch + sh - 1, 0) // sh + 1
  cols = max(width - cw + sw - 1, 0) // sw + 1
  out = []
  for r in range(rows):
    for c in range(cols):
      y2, x2 = min(r * sh + ch, height), min(c * sw + cw, width)
      out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
  return out


def slide_logits(apply, images: jax.Array, crop, stride, num_classes: int) -> jax.Array:
  """Average of `apply(window)` (logits resized to the window) over the sliding windows."""
  b, h, w, _ = images.shape
  total = jnp.zeros((b, h, w, num_classes), jnp.float32)
  count = np.zeros((h, w), np.float32)
  for y1, y2, x1, x2 in slide_windows(h, w, tuple(crop), tuple(stride)):
    out = resize_bilinear(apply(images[:, y1:y2, x1:x2]), y2 - y1, x2 - x1)
    total = total.at[:, y1:y2, x1:x2].add(out)
    count[y1:y2, x1:x2] += 1
  return total / count[None, :, :, None]


def confusion(labels: jax.Array, predicted: jax.Array, num_classes: int,
              ignore_index: int = 255) -> jax.Array:
  """Per-image confusion matrices `[B, K, K]` (rows: label, columns: prediction), ignore skipped."""
  b = labels.shape[0]
  valid = (labels != ignore_index).reshape(b, -1)
  idx = (jnp.where(valid, labels.reshape(b, -1), 0) * num_classes + predicted.reshape(b, -1))
  cm = jax.vmap(lambda i, v: jnp.zeros(num_classes * num_classes, jnp.int32).at[i].add(v))(
      idx, valid.astype(jnp.int32))
  return cm.reshape(b, num_classes, num_classes)


@tasks.register("segmentation")
class Segmentation(Task):
  OPTIONS = frozenset({"auc_weight", "auc_surrogate", "auc_transform", "auc_gamma", "bank",
                       "tail_classes", "inference", "crop_size", "stride", "ignore_index"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.num_classes = int(config.model.num_classes)
    self.auc_weight = float(t.get("auc_weight", 0.0))
    self.auc = dict(surrogate=t.get("auc_surrogate", "square"),
                    transform=t.get("auc_transform", "ovo"), gamma=float(t.get("auc_gamma", 1.0)))
    self.ignore = int(t.get("ignore_index", 255))
    self.bank_options = t.get("bank", None)
    self.tail_spec = t.get("tail_classes", None)
    self.inference = t.get("inference", "whole")
    if self.inference not in ("whole", "slide"):
      raise ValueError(f"task.inference must be 'whole' or 'slide', got {self.inference!r}")
    self.crop = tuple(t.get("crop_size", (512, 512)))
    self.stride = tuple(t.get("stride", self.crop))

  # --- training ---------------------------------------------------------------------------
  def bank_config(self, image_shape) -> sb.BankConfig | None:
    if not self.bank_options:
      return None
    o = dict(self.bank_options)
    return sb.BankConfig(tail=sb.tail_classes(o["tail"]), image_shape=tuple(image_shape),
                         memory_size=int(o.get("memory_size", 5)),
                         p_sample=float(o.get("p_sample", 1.0)),
                         p_resize=float(o.get("p_resize", 1.0)))

  def init_extra(self, env, rng, params):
    shape = env.dataset(self.config.data.train_split).element_spec["image"][0]
    cfg = self.bank_config(shape)
    return None if cfg is None else {"bank": sb.init(cfg)}

  def loss(self, model, batch, rng, extra, step):
    images, labels = batch["image"], batch["label"]
    bank_cfg = self.bank_config(images.shape[1:])
    if bank_cfg is not None:
      bank, images, labels = sb.apply_batch(bank_cfg, extra["bank"], images, labels, rng)
      extra = {"bank": bank}
    logits = resize_bilinear(model(images), *labels.shape[1:3])
    valid = labels != self.ignore
    ce_map = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
    ce = jnp.mean(jnp.where(valid, ce_map, 0.0))
    loss, metrics = ce, {"ce": ce}
    if self.auc_weight:
      auc = aucseg.auc_loss(logits, labels, ignore_index=self.ignore, **self.auc)
      loss = loss + self.auc_weight * auc
      metrics["auc"] = auc
    correct = (jnp.argmax(logits, -1) == labels) & valid
    metrics["pixel_accuracy"] = correct.sum() / jnp.maximum(valid.sum(), 1)
    aux = {"metrics": metrics}
    if extra is not None:
      aux["extra"] = extra
    return loss, aux

  # --- evaluation -------------------------------------------------------------------------
  def logits(self, model, images):
    if self.inference == "slide":
      return slide_logits(model, images, self.crop, self.stride, self.num_classes)
    return resize_bilinear(model(images), *images.shape[1:3])

  def eval_metrics(self, model, batch):
    pred = jnp.argmax(self.logits(model, batch["image"]), -1)
    return {"confusion": confusion(batch["label"], pred, self.num_classes, self.ignore)}

  def tail_classes(self, env):
    if self.tail_spec is not None:
      return sb.tail_classes(self.tail_spec)
    info = env.dataset(self.config.data.eval_split).info
    return tuple(info["tail_classes"]) if "tail_classes" in info else None

  def evaluate(self, env, state):
    out = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    cm = out["confusion"].astype(np.int64).sum(0)
    report = seg_eval.segmentation_report(cm, self.tail_classes(env))
    if env.workdir:
      path = os.path.join(env.workdir, f"per_class_iou_{int(state['step'])}.json")
      with open(path, "w") as f:
        json.dump([None if np.isnan(v) else float(v) for v in seg_eval.iou_per_class(cm)], f)
    return report

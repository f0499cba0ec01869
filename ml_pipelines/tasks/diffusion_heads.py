"""Heads on diffusion features through the trainer.

`pixel_ensemble`: the label-scarce pixel classifier ensemble (DDPM-segmentation, Baranchuk et al.
2022) or, with `sparsity=True`, the GATE pixel aggregator of Meng et al. 2024 ("Suppress Content
Shift"), whose loss per member is CE + s * L_sp * sg(CE) / sg(-L_sp) with s following the official
random walk (`losses.diffusion.sparsity_walk`, one walk per member in `extra`). Members share each
batch (the official code draws one shuffled loader per member) and are summed into one loss, so
each member's gradient is its own. Evaluation: per-pixel majority vote of the members, mIoU over the
split (`evaluators.segmentation`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from losses import diffusion as losses
from ml_pipelines import tasks
from ml_pipelines.evaluators import segmentation
from ml_pipelines.tasks.base import Task
from models.diffusion.heads import majority_vote


@tasks.register("pixel_ensemble")
class PixelEnsembleTask(Task):
  OPTIONS = frozenset({"sparsity", "num_classes", "ignore_label"})

  def _members(self):
    return self.config.model.get("members", 10)

  def init_extra(self, env, rng, params):
    if not self.config.task.get("sparsity", False):
      return None
    init = losses.sparsity_walk_init()
    return jax.tree.map(lambda a: jnp.stack([a] * self._members()), init)

  def loss(self, model, batch, rng, extra, step):
    logits, neg_sparsity = model(batch["x"])
    ce = jax.vmap(lambda l: optax.softmax_cross_entropy_with_integer_labels(
        l, batch["label"]).mean())(logits)
    metrics = {"ce": ce.mean(),
               "accuracy": (jnp.argmax(logits, -1) == batch["label"]).mean()}
    if extra is None:
      return ce.sum(), {"metrics": metrics}
    total = jax.vmap(losses.with_sparsity)(ce, neg_sparsity, extra["weight"]).sum()
    keys = jax.random.split(rng, ce.shape[0])
    extra = jax.vmap(losses.sparsity_walk, in_axes=(0, 0, None, 0))(
        extra, jax.lax.stop_gradient(ce), step, keys)
    metrics.update(sparsity=-neg_sparsity.mean(), sparsity_weight=extra["weight"].mean())
    return total, {"metrics": metrics, "extra": extra}

  def predict(self, model, batch):
    logits, _ = model(batch["x"])
    return {"pred": majority_vote(logits), "label": batch["label"]}

  def eval_metrics(self, model, batch):
    out = self.predict(model, batch)
    return {"accuracy": (out["pred"] == out["label"]).astype(jnp.float32)}

  def evaluate(self, env, state):
    out = env.predict(state, self.predict, split=self.config.data.eval_split)
    c = self.config.task.num_classes
    cm = segmentation.update(np.zeros((c, c), np.int64), out["label"], out["pred"],
                             self.config.task.get("ignore_label", 255))
    return {"mIoU": segmentation.mean_iou(cm), "pixel_accuracy": segmentation.pixel_accuracy(cm)}


@tasks.register("gate_correspondence")
class GateCorrespondenceTask(Task):
  """The GATE correspondence aggregator on SPair pairs (one pair per example): the symmetric
  fixed-temperature loss at the 64x64 grid plus the rescaled sparsity term (one random walk in
  `extra`); evaluation: nearest neighbours of the source keypoints among the target's pixels after
  bilinear upsampling to `load_size`, PCK@0.1 per image and per bounding box over all keypoints
  (the official `validate`; its reported number is the best over validations)."""
  OPTIONS = frozenset({"load_size", "alpha"})

  def init_extra(self, env, rng, params):
    return losses.sparsity_walk_init()

  def _features(self, model, batch):
    b = batch["feats"].shape[0]
    x = batch["feats"].reshape(2 * b, *batch["feats"].shape[2:])
    f, neg_sparsity = model(x, batch["attn"].reshape(2 * b, *batch["attn"].shape[2:]))
    return f.reshape(b, 2, *f.shape[1:]), neg_sparsity

  def loss(self, model, batch, rng, extra, step):
    f, neg_sparsity = self._features(model, batch)
    ce = jax.vmap(losses.symmetric_correspondence_loss)(
        f[:, 0], f[:, 1], batch["src_idx"], batch["tgt_idx"], batch["valid"]).mean()
    total = losses.with_sparsity(ce, neg_sparsity, extra["weight"])
    extra = losses.sparsity_walk(extra, jax.lax.stop_gradient(ce), step, rng)
    return total, {"metrics": {"clip_loss": ce, "sparsity": -neg_sparsity,
                               "sparsity_weight": extra["weight"]}, "extra": extra}

  def predict(self, model, batch):
    f, _ = self._features(model, batch)
    size = self.config.task.get("load_size", 512)

    def one(src, tgt, pts):
      up = lambda a: jax.image.resize(a, (size, size, a.shape[-1]), "bilinear", antialias=False)
      src, tgt = up(src), up(tgt)
      idx = jnp.asarray(jnp.clip(jnp.round(pts[:, 0]), 0, size - 1) * size
                        + jnp.clip(jnp.round(pts[:, 1]), 0, size - 1), jnp.int32)
      q = src.reshape(-1, src.shape[-1])[idx]
      q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
      t = tgt.reshape(-1, tgt.shape[-1])
      t = t / jnp.linalg.norm(t, axis=-1, keepdims=True)
      best = jnp.argmax(q @ t.T, axis=-1)
      return jnp.stack([best // size, best % size], -1).astype(jnp.float32)
    pred = jax.vmap(one)(f[:, 0], f[:, 1], batch["src_load"])
    return {"pred": pred, "tgt_load": batch["tgt_load"], "valid": batch["valid"],
            "target_size": batch["target_size"], "bbox": batch["bbox"]}

  def evaluate(self, env, state):
    from ml_pipelines.evaluators import correspondence
    out = env.predict(state, self.predict, split=self.config.data.eval_split)
    size = self.config.task.get("load_size", 512)
    alpha = self.config.task.get("alpha", 0.1)
    img, box = [], []
    for pred, tgt, valid, wh, bbox in zip(out["pred"], out["tgt_load"], out["valid"],
                                          out["target_size"], out["bbox"]):
      scale = np.array([wh[1] / size, wh[0] / size])  # load grid -> original (y, x)
      p, t = pred[valid] * scale, tgt[valid] * scale
      img.append(correspondence.pck(p, t, image_size=tuple(wh), alpha=alpha))
      box.append(correspondence.pck(p, t, box=tuple(bbox), alpha=alpha))
    return {"pck_img": float(np.concatenate(img).mean()),
            "pck_bbox": float(np.concatenate(box).mean())}


@tasks.register("diffusion_segmentation")
class DiffusionSegmentationTask(Task):
  """Semantic segmentation on per-level feature variants (`models.diffusion.heads.
  DiffusionSegmentor`), GATE's mmseg recipe: decode loss CE + `lovasz_weight` * Lovasz-softmax and
  `aux_weight` (0.4) * the auxiliary head's CE, logits resized bilinearly to the labels, CE
  averaged over all pixels with ignored ones counting 0 (mmseg's `avg_non_ignore=False`).
  Evaluation: the confusion matrix over the split at the label resolution (mIoU, pixel accuracy;
  `evaluators.segmentation`)."""
  OPTIONS = frozenset({"num_classes", "aux_weight", "lovasz_weight", "ignore_index"})

  def _logits(self, model, batch):
    from models.segmenter import resize_bilinear
    n = sum(k.startswith("level") for k in batch)
    logits, aux = model([batch[f"level{l}"] for l in range(n)])
    size = batch["label"].shape[1:3]
    return resize_bilinear(logits, *size), resize_bilinear(aux, *size)

  def loss(self, model, batch, rng, extra, step):
    t = self.config.task
    ignore = t.get("ignore_index", 255)
    labels = batch["label"]
    valid = labels != ignore
    logits, aux = self._logits(model, batch)

    def ce(x):
      per_pixel = optax.softmax_cross_entropy_with_integer_labels(x, jnp.where(valid, labels, 0))
      return jnp.mean(jnp.where(valid, per_pixel, 0.0))
    decode_ce, aux_ce = ce(logits), ce(aux)
    lovasz = losses.lovasz_softmax(logits, labels, ignore)
    total = (decode_ce + t.get("lovasz_weight", 1.0) * lovasz
             + t.get("aux_weight", 0.4) * aux_ce)
    correct = (jnp.argmax(logits, -1) == labels) & valid
    return total, {"metrics": {"ce": decode_ce, "lovasz": lovasz, "aux_ce": aux_ce,
                               "pixel_accuracy": correct.sum() / jnp.maximum(valid.sum(), 1)}}

  def eval_metrics(self, model, batch):
    from ml_pipelines.tasks.segmentation import confusion
    pred = jnp.argmax(self._logits(model, batch)[0], -1)
    return {"confusion": confusion(batch["label"], pred, self.config.task.num_classes,
                                   self.config.task.get("ignore_index", 255))}

  def evaluate(self, env, state):
    out = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    return segmentation.segmentation_report(out["confusion"].astype(np.int64).sum(0))

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

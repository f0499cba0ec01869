"""Image classification: cross-entropy with label smoothing, optional mixup / cutmix, accuracy.

Options (config.task): label_smoothing, mixup_alpha, cutmix_alpha (both > 0: one of the two per
batch with probability 1/2, as timm), image_key, label_key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from losses import classification as cls
from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task


@tasks.register("classification")
class Classification(Task):
  OPTIONS = frozenset({"label_smoothing", "mixup_alpha", "cutmix_alpha", "image_key", "label_key"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.smoothing = float(t.get("label_smoothing", 0.0))
    self.mixup_alpha = float(t.get("mixup_alpha", 0.0))
    self.cutmix_alpha = float(t.get("cutmix_alpha", 0.0))
    self.image_key = t.get("image_key", "image")
    self.label_key = t.get("label_key", "label")

  def _mix(self, rng, images):
    """(images, lam); lam = 1 when no mixing is configured."""
    k_choice, k_mix = jax.random.split(rng)
    if self.mixup_alpha and self.cutmix_alpha:
      return jax.lax.cond(jax.random.bernoulli(k_choice),
                          lambda: cls.mixup(k_mix, images, self.mixup_alpha)[:2],
                          lambda: cls.cutmix(k_mix, images, self.cutmix_alpha))
    if self.mixup_alpha:
      return cls.mixup(k_mix, images, self.mixup_alpha)[:2]
    if self.cutmix_alpha:
      return cls.cutmix(k_mix, images, self.cutmix_alpha)
    return images, jnp.ones([], images.dtype)

  def loss(self, model, batch, rng, extra, step):
    images, labels = batch[self.image_key], batch[self.label_key]
    images, lam = self._mix(rng, images)
    logits = model(images)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.smoothing)
    targets = cls.mix_targets(targets, lam)
    loss = jnp.mean(cls.soft_cross_entropy(logits, targets))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, {"metrics": {"accuracy": accuracy}}

  def eval_metrics(self, model, batch):
    logits = model(batch[self.image_key])
    labels = batch[self.label_key]
    loss = cls.cross_entropy(logits, labels)
    return {"loss": loss, "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}

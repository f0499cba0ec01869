"""Cross-entropies of audio-visual training (OGM-GE, Peng et al., CVPR 2022, Eq. 1: CE of the fused
logits; the unimodal CEs of MMPareto, Wei & Hu, ICML 2024, Eq. 2; mixup, Zhang et al., ICLR 2018,
Eq. 1, as MIE's unimodal stages use it with Beta(1, 1) and a random partner, as the official
njustkmg/IJCAI25-IGM code's torch.randperm). The cross-entropy and mixup are losses/classification's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from losses import classification
from losses.classification import cross_entropy

__all__ = ["cross_entropy", "modality_cross_entropy", "mixup", "mixup_cross_entropy"]


def modality_cross_entropy(modality_logits: dict, labels: jax.Array) -> dict:
  """{m: batch-mean CE of modality m's logits}."""
  return {m: jnp.mean(cross_entropy(l, labels)) for m, l in sorted(modality_logits.items())}


def mixup(rng: jax.Array, x: jax.Array, alpha: float = 1.0):
  """(lam x + (1 - lam) x[perm], perm, lam), lam ~ Beta(alpha, alpha), perm a random permutation."""
  mixed, lam, perm = classification.mixup(rng, x, alpha, permute=True)
  return mixed, perm, lam


def mixup_cross_entropy(logits: jax.Array, labels: jax.Array, perm: jax.Array, lam) -> jax.Array:
  """[B] lam CE(logits, y) + (1 - lam) CE(logits, y[perm])."""
  return lam * cross_entropy(logits, labels) + (1 - lam) * cross_entropy(logits, labels[perm])


def mie_loss(logits: jax.Array, labels: jax.Array, perm: jax.Array, lam, flat_ratio) -> jax.Array:
  """MIE/IGM step loss (njustkmg/IJCAI25-IGM train_CREMA.py), batch mean:
  `(1 - r) * mean(lam CE(o, y) + (1 - lam) CE(o, y[perm])) + r * mean CE(o, y)` with o the logits of
  the mixed input; the second ("flat") term uses the unmixed labels."""
  mixed = jnp.mean(mixup_cross_entropy(logits, labels, perm, lam))
  return (1 - flat_ratio) * mixed + flat_ratio * jnp.mean(cross_entropy(logits, labels))

"""PVP's losses and logits (TAI++ / PVP, Xu et al., IJCAI 2024, arXiv 2405.06926; code
Jinx630/Pseudo-Visual-Prompt `trainers/utils.py` and `trainers/Caption_distill_double.py`, on
TaI-DPT, Guo et al., CVPR 2023).

- `ranking_loss`: `mean_b sum_{p: y=1} sum_{n: y=0} max(0, margin - z_p + z_n)` (TaI-DPT Eq. 5).
- `local_logits`: for each class, a softmax over the L local features of their similarity (times
  the spatial temperature T) weights the similarities: `z_c = sum_l scale * s_lc softmax_l(T s_.c)`;
  masked positions (text padding) get -10000 added to s first, as the code does.
- `alignment_loss`: class-level alignment of text-prompt and image-prompt features, `G = s Tg Pg^T`:
  `(CE_sum(G, arange) + CE_sum(G^T, arange)) / 2` (PVP's `loss_ce`, summed over classes).
- `noisy`: `normalise(normalise(t) + sigma N(0, I))`, the sentence-feature noise of training.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def l2_normalise(x, axis: int = -1):
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


def ranking_loss(scores, labels, margin: float = 1.0):
  """scores [B, C], labels [B, C] in {0, 1} -> scalar: pairwise hinge of every (positive,
  negative) class pair of each example, summed per example, averaged over the batch."""
  y = labels.astype(scores.dtype)
  hinge = jax.nn.relu(margin - scores[:, None, :] + scores[:, :, None])  # [b, n, p]
  return jnp.mean(jnp.sum(hinge * y[:, None, :] * (1 - y[:, :, None]), axis=(1, 2)))


def local_logits(local, classes, temperature: float, scale: float = 4.0, mask=None):
  """local [B, L, D] and classes [C, D], both L2-normalised; mask [B, L] True = keep -> [B, C]."""
  s = jnp.einsum("bld,cd->blc", local, classes)
  if mask is not None:
    s = s + jnp.where(mask, 0.0, -10000.0)[:, :, None]
  weights = jax.nn.softmax(s * temperature, axis=1)
  return jnp.sum(scale * s * weights, axis=1)


def alignment_loss(logits):
  """logits [C, C] (text prompt i vs image prompt j) -> symmetric summed cross-entropy / 2."""
  target = jnp.arange(logits.shape[0])
  ce = lambda z: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(z, target))
  return (ce(logits) + ce(logits.T)) / 2


def noisy(x, rng, sigma: float):
  """normalise(normalise(x) + sigma * N(0, I)) along the last axis."""
  x = l2_normalise(x)
  return l2_normalise(x + sigma * jax.random.normal(rng, x.shape, x.dtype))

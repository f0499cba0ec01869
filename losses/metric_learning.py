"""Metric-learning losses on a batch of embeddings and their identity labels.

- `batch_hard_triplet`: the batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss
  for Person Re-Identification", arXiv 1703.07737, Eq. 5), as coded in open-reid's
  `TripletLoss` (Cysu/open-reid `reid/loss/triplet.py`) and used unchanged as `OriTripletLoss` by
  SGIEL (Feng et al., CVPR 2023; jiawei151/SGIEL_VIReID `loss.py`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def pairwise_euclidean(a: jax.Array, b: jax.Array) -> jax.Array:
  """`[n, m]` Euclidean distances `sqrt(max(|a_i|^2 + |b_j|^2 - 2 a_i.b_j, 1e-12))`: the expanded
  form with the clamp of the official code (so a zero distance has a finite gradient)."""
  sq = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T
  return jnp.sqrt(jnp.clip(sq, 1e-12))


def batch_hard_triplet(features: jax.Array, labels: jax.Array, margin: float = 0.3
                       ) -> tuple[jax.Array, jax.Array]:
  """Batch-hard triplet loss and the number of anchors it ranks correctly.

      L = 1/n sum_i max(0, margin + max_{j: y_j = y_i} d_ij - min_{k: y_k != y_i} d_ik)

  with `d = pairwise_euclidean(features, features)`; the hardest positive may be the anchor itself
  (distance ~1e-6) when it is its identity's only sample, as in the official code. An anchor with no
  negative in the batch contributes 0 (the official code fails on it).

  features: `[n, d]`; labels: `[n]` int. Returns `(loss, correct)` where `correct` counts the
  anchors with `d_an >= d_ap` (the official second output).
  """
  dist = pairwise_euclidean(features, features)
  same = labels[:, None] == labels[None, :]
  dist_ap = jnp.max(jnp.where(same, dist, -jnp.inf), axis=1)
  dist_an = jnp.min(jnp.where(same, jnp.inf, dist), axis=1)
  loss = jnp.mean(jax.nn.relu(dist_ap - dist_an + margin))
  return loss, jnp.sum(dist_an >= dist_ap)

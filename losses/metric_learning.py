"""Metric-learning losses on a batch of embeddings and their identity labels.

- `batch_hard_triplet`: the batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss
  for Person Re-Identification", arXiv 1703.07737, Eq. 5), as coded in open-reid's
  `TripletLoss` (Cysu/open-reid `reid/loss/triplet.py`) and used unchanged as `OriTripletLoss` by
  SGIEL (Feng et al., CVPR 2023; jiawei151/SGIEL_VIReID `loss.py`).
- `class_center_triplet`: anchors against class centres (the class-centre triplet of PCCT, Chen et
  al., arXiv 2207.04793, as far as its abstract states it [inferred formulation]): centres are the
  batch means of each class's embeddings (gradient stopped),
  ``L = 1/n sum_i max(0, margin + |z_i - c_{y_i}| - min_{k != y_i} |z_i - c_k|)``.
- `supervised_contrastive`: SupCon (Khosla et al., NeurIPS 2020, Eq. 2, "L_out"), on L2-normalised
  embeddings, ``L_i = -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / tau) / sum_{a != i}
  exp(z_i.z_a / tau))``, averaged over anchors with at least one positive.
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


def class_center_triplet(features: jax.Array, labels: jax.Array, num_classes: int,
                         margin: float = 0.3) -> jax.Array:
  """Mean over anchors of ``max(0, margin + d(z_i, c_{y_i}) - min_{k != y_i} d(z_i, c_k))`` with
  c_k the (stop-gradient) batch mean of class k's features, over classes present in the batch."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  counts = onehot.sum(0)
  centres = jax.lax.stop_gradient((onehot.T @ features) / jnp.maximum(counts, 1.0)[:, None])
  dist = pairwise_euclidean(features, centres)
  pos = jnp.take_along_axis(dist, labels[:, None], axis=1)[:, 0]
  present = counts > 0
  neg = jnp.min(jnp.where(present[None, :] & (onehot == 0), dist, jnp.inf), axis=1)
  return jnp.mean(jnp.where(jnp.isfinite(neg), jax.nn.relu(pos - neg + margin), 0.0))


def supervised_contrastive(features: jax.Array, labels: jax.Array, temperature: float = 0.1
                           ) -> jax.Array:
  """SupCon L_out on the L2-normalised `features` `[n, d]`."""
  z = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  n = z.shape[0]
  sim = (z @ z.T) / temperature
  self_mask = jnp.eye(n, dtype=bool)
  sim = jnp.where(self_mask, -jnp.inf, sim)
  log_prob = sim - jax.nn.logsumexp(sim, axis=1, keepdims=True)
  pos = (labels[:, None] == labels[None, :]) & ~self_mask
  n_pos = pos.sum(1)
  per_anchor = -jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
  has = n_pos > 0
  return jnp.sum(jnp.where(has, per_anchor, 0.0)) / jnp.maximum(has.sum(), 1)

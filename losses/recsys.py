"""Collaborative metric learning losses of DPCML (Bao et al., NeurIPS 2022; statusrank/DPCML), and
BPR for its matrix-factorisation baseline.

- `hinge`: `[m + s(u, v+) - s(u, v-)]_+` per triplet (paper Eq. 4). With several sampled negatives
  `[B, S]` the hardest one (smallest distance) is used (DPCML2 / `HarCML`). The official loss SUMS
  over the batch; callers sum.
- `diversity_barrier`: the diversity-control regulariser (DCRS, paper Eq. 7) over all users, with
  `d_{u,c,c'} = ||u_c - u_c'||²` from the Gram matrix (no `[M, C, C, d]` tensor):
    * `per_pair=True` (the official code, `regularization_loss_barrier`): hinge every pair,
      `mean_{u,c,c'} [δ1 - d]_+ [c≠c'] + mean_{u,c,c'} [d - δ2]_+ [c≠c']` (the means over all
      M·C·C entries, diagonal included);
    * `per_pair=False` (the paper): `mean_u [δ1 - δ_u]_+ + [δ_u - δ2]_+` with
      `δ_u = Σ_{c,c'} d_{u,c,c'} / (2 C (C - 1))`.
- `bpr`: `-log σ(s(u, v+) - s(u, v-))` per triplet from preference scores (higher = preferred;
  Rendle et al., UAI 2009, BPR-Opt), per sampled negative with `[B, S]` negatives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def hinge(positive: jax.Array, negative: jax.Array, margin: float) -> jax.Array:
  """Per-triplet hinge from distances `positive [B]`, `negative [B]` or `[B, S]` (hardest used)."""
  if negative.ndim == positive.ndim + 1:
    negative = jnp.min(negative, axis=-1)
  return jax.nn.relu(margin + positive - negative)


def pairwise_sq_distances(users: jax.Array) -> jax.Array:
  """`||u_c - u_c'||² [M, C, C]` of user vectors `[M, C, d]` via the Gram matrix."""
  sq = jnp.sum(jnp.square(users), -1)
  gram = jnp.einsum("mcd,med->mce", users, users)
  return jnp.maximum(sq[:, :, None] + sq[:, None, :] - 2 * gram, 0.0)


def diversity_barrier(users: jax.Array, delta1: float, delta2: float,
                      per_pair: bool = True) -> jax.Array:
  """The DCRS value for user vectors `[M, C, d]` (module docstring)."""
  m, c, _ = users.shape
  d = pairwise_sq_distances(users)
  if per_pair:
    off = 1.0 - jnp.eye(c, dtype=d.dtype)
    return jnp.mean(jax.nn.relu((delta1 - d) * off)) + jnp.mean(jax.nn.relu((d - delta2) * off))
  mean = jnp.sum(d, axis=(1, 2)) / (2 * c * (c - 1))
  return jnp.mean(jax.nn.relu(delta1 - mean) + jax.nn.relu(mean - delta2))


def bpr(positive: jax.Array, negative: jax.Array) -> jax.Array:
  """`-log σ(s+ - s-)` from scores `positive [B]`, `negative [B]` or `[B, S]` (one per negative)."""
  if negative.ndim == positive.ndim + 1:
    positive = positive[..., None]
  return -jax.nn.log_sigmoid(positive - negative)

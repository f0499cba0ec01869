"""The five loss functions of RCPMOD (regularized contrastive partial multi-view outlier detection,
ACM MM 2024, arXiv 2408.07819; official code 180400518/RCPMOD `loss.py`), in JAX.

With `h = [h_i; h_j]` (2B rows, usually L2-normalised latents of two views) and `sim = h hᵀ / τ`:
- `nt_xent` (NT-Xent, `contrastive_loss`): each row's cross-entropy of its partner (`i ↔ i + B`)
  against every other row, summed and divided by 2B. With `memory = (m_i, m_j)` the memory rows'
  similarities join every row's negatives (the outlier-aware `contrastive_loss_oa`).
- `nt_xent_scores` (`contrastive_score`): the per-sample cross-entropy, averaged over the two
  directions: `[B]` outlier scores (high = the views disagree).
- `triplet` (`triplet_loss`): `mean [||z - z⁺|| - ||z - z⁻||]_+` (margin 0).
- `spreading` (`uniform_loss`, after KoLeo): `-mean log(n ||x_i - x_NN(i)||)`, the neighbour NN(i)
  the row of largest inner product (self excluded by setting the diagonal to -1, as the code), found
  without gradient.
Distances are `torch.nn.PairwiseDistance`'s `||a - b + 1e-6||`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

PAIRWISE_EPS = 1e-6


def pairwise_distance(a: jax.Array, b: jax.Array) -> jax.Array:
  """`||a - b + 1e-6||` per row (torch.nn.PairwiseDistance(2))."""
  return jnp.linalg.norm(a - b + PAIRWISE_EPS, axis=-1)


def _cross_entropies(h_i, h_j, temperature, memory=None, valid=None, memory_valid=None):
  """Per-row `[2B]` cross-entropy of the partner among all other rows (and the memory rows).

  `valid [B]` drops pairs (as anchors and as negatives); `memory_valid [M]` drops memory pairs."""
  b = h_i.shape[0]
  h = jnp.concatenate([h_i, h_j])
  sim = h @ h.T / temperature
  positive = jnp.concatenate([jnp.diagonal(sim, b), jnp.diagonal(sim, -b)])
  drop = jnp.eye(2 * b, dtype=bool)
  if valid is not None:
    drop = drop | ~jnp.concatenate([valid, valid])[None, :]
  others = jnp.where(drop, -jnp.inf, sim)
  if memory is not None:
    mem = h @ jnp.concatenate(memory).T / temperature
    if memory_valid is not None:
      mem = jnp.where(jnp.concatenate([memory_valid, memory_valid])[None, :], mem, -jnp.inf)
    others = jnp.concatenate([others, mem], axis=1)
  return jax.nn.logsumexp(others, axis=1) - positive


def nt_xent(h_i: jax.Array, h_j: jax.Array, temperature: float = 0.5,
            memory: tuple[jax.Array, jax.Array] | None = None, valid: jax.Array | None = None,
            memory_valid: jax.Array | None = None) -> jax.Array:
  """NT-Xent over the 2B rows (module docstring); `memory` adds negatives. With `valid`, the mean
  over the valid pairs only, as the official code's selection of the rows having both views."""
  ce = _cross_entropies(h_i, h_j, temperature, memory, valid, memory_valid)
  if valid is None:
    return jnp.mean(ce)
  both = jnp.concatenate([valid, valid])
  return jnp.sum(jnp.where(both, ce, 0.0)) / jnp.maximum(jnp.sum(both), 1)


def nt_xent_scores(h_i: jax.Array, h_j: jax.Array, temperature: float = 0.5) -> jax.Array:
  """Per-sample `[B]` contrastive outlier score."""
  ce = _cross_entropies(h_i, h_j, temperature)
  b = h_i.shape[0]
  return (ce[:b] + ce[b:]) / 2


def triplet(anchor: jax.Array, positive: jax.Array, negative: jax.Array,
            where: jax.Array | None = None) -> jax.Array:
  """`where [B]`: the rows taking part (the official code selects the samples having the view)."""
  return jnp.mean(jax.nn.relu(pairwise_distance(anchor, positive)
                              - pairwise_distance(anchor, negative)), where=where)


def spreading(x: jax.Array, where: jax.Array | None = None) -> jax.Array:
  """`where [B]`: the rows taking part (n = their count; neighbours among them only)."""
  n = x.shape[0] if where is None else jnp.sum(where)
  dots = jax.lax.stop_gradient(x @ x.T)
  dots = jnp.where(jnp.eye(x.shape[0], dtype=bool), -1.0, dots)
  if where is not None:
    dots = jnp.where(where[None, :], dots, -jnp.inf)
  nearest = jnp.argmax(dots, axis=1)
  return -jnp.mean(jnp.log(n * pairwise_distance(x, x[nearest])), where=where)

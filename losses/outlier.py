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


def _cross_entropies(h_i, h_j, temperature, memory=None):
  """Per-row `[2B]` cross-entropy of the partner among all other rows (and the memory rows)."""
  b = h_i.shape[0]
  h = jnp.concatenate([h_i, h_j])
  sim = h @ h.T / temperature
  positive = jnp.concatenate([jnp.diagonal(sim, b), jnp.diagonal(sim, -b)])
  others = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, sim)
  if memory is not None:
    others = jnp.concatenate([others, h @ jnp.concatenate(memory).T / temperature], axis=1)
  return jax.nn.logsumexp(others, axis=1) - positive


def nt_xent(h_i: jax.Array, h_j: jax.Array, temperature: float = 0.5,
            memory: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
  """NT-Xent over the 2B rows (module docstring); `memory` adds negatives."""
  return jnp.mean(_cross_entropies(h_i, h_j, temperature, memory))


def nt_xent_scores(h_i: jax.Array, h_j: jax.Array, temperature: float = 0.5) -> jax.Array:
  """Per-sample `[B]` contrastive outlier score."""
  ce = _cross_entropies(h_i, h_j, temperature)
  b = h_i.shape[0]
  return (ce[:b] + ce[b:]) / 2


def triplet(anchor: jax.Array, positive: jax.Array, negative: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.relu(pairwise_distance(anchor, positive)
                              - pairwise_distance(anchor, negative)))


def spreading(x: jax.Array) -> jax.Array:
  dots = jax.lax.stop_gradient(x @ x.T)
  dots = jnp.where(jnp.eye(x.shape[0], dtype=bool), -1.0, dots)
  nearest = jnp.argmax(dots, axis=1)
  return -jnp.mean(jnp.log(x.shape[0] * pairwise_distance(x, x[nearest])))

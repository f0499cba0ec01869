"""DPCML: diversity-promoting collaborative metric learning (Bao et al., NeurIPS 2022, "The Minority
Matters: A Diversity-Promoting Collaborative Metric Learning Algorithm"; official code
statusrank/DPCML, `model/model.py`). C = 1 is the conventional CML (Hsieh et al., WWW 2017).

Each user u has C vectors `u_c ∈ R^d` (table `user_embeddings [M, C, d]`, init N(0, 0.01²)), each
item one vector `v` (`item_embeddings [N, d]`, init N(0, 1/d)); the preference score is

    s(u, v) = min_c ||u_c - v||²          (paper Eq. 3; items ranked by increasing s)

Items are constrained to the unit ball and users to the sphere of radius `max_norm` by projections,
not by the parameterisation (`optim/dpcml.py`): as the official `nn.Embedding(max_norm=1)`, the
items a batch looks up are renormalised before the loss (`looked_up_items`, straight-through: the
gradient reaches the stored row unscaled), and after each optimizer step every user vector is
rescaled to norm `max_norm` (`ClipUserNorm`).

Tables are plain row-indexed arrays: with `sharding_rules` placing their rows over a mesh axis, the
lookups `jnp.take(table, ids, axis=0)` compile to the shard-local form (XLA's SPMD partitioner
all-gathers the ids, each shard reads its own rows and zero-fills the rest, an all-reduce sums
them; the gradient is a scatter-add into the local shard), so no device holds a whole table or its
gradient (checked on the compiled HLO in tests/test_dpcml_sharded.py). The partitioner chooses this
form when a batch looks up fewer rows than the table holds, which is the case at any real scale; a
toy table smaller than the batch's ids may be all-gathered instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models

RENORM_EPS = 1e-7  # torch.embedding_renorm_: scale = max_norm / (norm + 1e-7)


def renorm_scale(rows: jax.Array, max_norm: float) -> jax.Array:
  """`[..., 1]` factors that bring rows with norm > max_norm to max_norm (1 elsewhere)."""
  norm = jnp.linalg.norm(rows, axis=-1, keepdims=True)
  return jnp.where(norm > max_norm, max_norm / (norm + RENORM_EPS), 1.0)


def min_distance(users: jax.Array, items: jax.Array) -> jax.Array:
  """`min_c ||u_c - v||²` for users `[B, C, d]` and items `[B, *S, d]` -> `[B, *S]`."""
  extra = items.ndim - 2
  u = users.reshape(users.shape[0], *([1] * extra), *users.shape[1:])      # [B, *1, C, d]
  return jnp.min(jnp.sum(jnp.square(u - items[..., None, :]), -1), axis=-1)


class DPCML(nnx.Module):
  """The user and item tables; `num_vectors` = C."""

  def __init__(self, *, num_users: int, num_items: int, dim: int = 100, num_vectors: int = 5,
               max_norm: float = 1.0, rngs: nnx.Rngs):
    self.user_embeddings = nnx.Param(
        0.01 * jax.random.normal(rngs.params(), (num_users, num_vectors, dim)))
    self.item_embeddings = nnx.Param(
        jax.random.normal(rngs.params(), (num_items, dim)) / dim ** 0.5)
    self.max_norm = max_norm

  def users(self, ids: jax.Array) -> jax.Array:
    """`[B, C, d]` vectors of users `ids [B]`."""
    return jnp.take(self.user_embeddings[...], ids, axis=0)

  def looked_up_items(self, ids: jax.Array) -> jax.Array:
    """Rows `ids [...]` renormalised into the max_norm ball, as `nn.Embedding(max_norm=...)`
    returns them; the gradient passes to the stored rows unscaled (straight-through)."""
    rows = jnp.take(self.item_embeddings[...], ids, axis=0)
    return rows + jax.lax.stop_gradient(rows * renorm_scale(rows, self.max_norm) - rows)

  def distances(self, user_ids: jax.Array, item_ids: jax.Array) -> jax.Array:
    """`s(u, v)` for users `[B]` and looked-up items `[B, *S]` -> `[B, *S]`."""
    return min_distance(self.users(user_ids), self.looked_up_items(item_ids))

  def scores(self, user_ids: jax.Array) -> jax.Array:
    """`-s(u, v)` for users `[B]` against every stored item -> `[B, N]` (official `predict`)."""
    u = self.users(user_ids)                                              # [B, C, d]
    v = self.item_embeddings[...]
    d = (jnp.sum(jnp.square(u), -1)[..., None] + jnp.sum(jnp.square(v), -1)
         - 2 * jnp.einsum("bcd,nd->bcn", u, v))
    return -jnp.min(d, axis=1)

  def top_items(self, user_ids: jax.Array, k: int, shards: int = 1
                ) -> tuple[jax.Array, jax.Array]:
    """(scores, item ids) `[B, k]` of each user's k best items (`top_k_by_blocks`)."""
    return top_k_by_blocks(self.scores(user_ids), k, shards)


def top_k_by_blocks(scores: jax.Array, k: int, shards: int) -> tuple[jax.Array, jax.Array]:
  """Top k of `scores [B, N]` per row, ties to the smaller column, in two stages so that scores
  sharded by item rows over `shards` devices are never gathered: each of the `shards` contiguous
  blocks keeps its top k locally and only the `[B, shards * k]` candidates are merged."""
  b, n = scores.shape
  if n % shards:
    raise ValueError(f"{n} items do not split into {shards} shards.")
  values, ids = jax.lax.top_k(scores.reshape(b, shards, n // shards), k)
  ids = ids + (jnp.arange(shards) * (n // shards))[None, :, None]
  values, pick = jax.lax.top_k(values.reshape(b, -1), k)
  return values, jnp.take_along_axis(ids.reshape(b, -1), pick, axis=1)


class MatrixFactorization(nnx.Module):
  """The MF baseline of the DPCML paper's comparison, as trained by BPR (Rendle et al., UAI 2009):
  one vector per user `p_u` (`user_embeddings [M, d]`) and per item `q_v`
  (`item_embeddings [N, d]`), both initialised N(0, `init_std`²) (0.1: MyMediaLite's BPRMF, the
  reference implementation of the BPR authors), and the score is the inner product
  `s(u, v) = p_u · q_v` (higher = preferred; no norm constraint). The tables shard by rows exactly as DPCML's do (module docstring)."""

  def __init__(self, *, num_users: int, num_items: int, dim: int = 100, init_std: float = 0.1,
               rngs: nnx.Rngs):
    self.user_embeddings = nnx.Param(
        init_std * jax.random.normal(rngs.params(), (num_users, dim)))
    self.item_embeddings = nnx.Param(
        init_std * jax.random.normal(rngs.params(), (num_items, dim)))

  def users(self, ids: jax.Array) -> jax.Array:
    """`[B, d]` vectors of users `ids [B]`."""
    return jnp.take(self.user_embeddings[...], ids, axis=0)

  def items(self, ids: jax.Array) -> jax.Array:
    """`[..., d]` vectors of items `ids [...]`."""
    return jnp.take(self.item_embeddings[...], ids, axis=0)

  def scores(self, user_ids: jax.Array) -> jax.Array:
    """`p_u · q_v` for users `[B]` against every item -> `[B, N]`."""
    return self.users(user_ids) @ self.item_embeddings[...].T

  def top_items(self, user_ids: jax.Array, k: int, shards: int = 1
                ) -> tuple[jax.Array, jax.Array]:
    """(scores, item ids) `[B, k]` of each user's k best items (`top_k_by_blocks`)."""
    return top_k_by_blocks(self.scores(user_ids), k, shards)


models.register("dpcml", DPCML)
models.register("matrix_factorization", MatrixFactorization)

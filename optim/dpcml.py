"""DPCML's norm constraints as an optax transformation placed after the base optimizer
(`optimizer.post_transforms = ("norm_projections",)`; Bao et al., NeurIPS 2022, statusrank/DPCML).

The official training step, per batch: the item rows the batch looks up are renormalised in place
into the `max_norm` ball (`nn.Embedding(max_norm=1)`), the loss is taken on them, Adam steps, then
`ClipUserNorm` rescales every user vector to norm exactly `max_norm`. With `p` the parameters before
the step and `Δ` the base optimizer's update, this transform returns the update `p' - p` with

    items:  p'_v = P_ball(p_v) + Δ_v   for the looked-up rows (`item_ids`, from the task's tx_args),
            p'_v = p_v + Δ_v           for the others (Adam's momentum still moves them);
    users:  p'_u = max_norm · (p_u + Δ_u) / ||p_u + Δ_u||   per vector (the last axis).

Leaves are chosen by path regexes (`users`, `items`); a leaf matching neither passes through.
The transform has no state.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

import optim
from models.dpcml import renorm_scale
from optim.paths import path_str


def project_users(rows: jax.Array, max_norm: float) -> jax.Array:
  """Every vector (last axis) rescaled to norm `max_norm` (official `ClipUserNorm`)."""
  return rows * (max_norm / jnp.linalg.norm(rows, axis=-1, keepdims=True))


def renorm_looked_up(table: jax.Array, ids: jax.Array, max_norm: float) -> jax.Array:
  """`table [N, d]` with the rows `ids` renormalised into the ball (in-place embedding renorm)."""
  scale = jnp.ones([table.shape[0]], table.dtype).at[ids.reshape(-1)].set(
      renorm_scale(jnp.take(table, ids.reshape(-1), axis=0), max_norm)[:, 0])
  return table * scale[:, None]


@optim.register("norm_projections")
def norm_projections(*, param_groups=None, max_norm: float = 1.0,
                     users: str = r"user_embeddings$", items: str = r"item_embeddings$"
                     ) -> optax.GradientTransformationExtraArgs:
  del param_groups
  users_rx, items_rx = re.compile(users), re.compile(items)

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None, *, item_ids=None, **extra):
    del extra
    if params is None:
      raise ValueError("norm_projections needs the parameters (it projects p + update).")

    def one(path, u, p):
      name = path_str(path)
      if users_rx.search(name):
        return project_users(p + u, max_norm) - p
      if items_rx.search(name) and item_ids is not None:
        return renorm_looked_up(p, item_ids, max_norm) + u - p
      return u
    return jax.tree_util.tree_map_with_path(one, updates, params), state

  return optax.GradientTransformationExtraArgs(init, update)

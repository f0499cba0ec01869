"""Losses of the GATE heads (Meng et al. 2024, "Suppress Content Shift", github.com/Darkbblue/
diffusion-content-shift): the correspondence aggregator's symmetric CLIP-style loss at a fixed
temperature, and the pixel aggregator's rescaled sparsity term with its random-walk weight."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

LOGIT_SCALE = math.log(1 / 0.07)  # fixed, not learned (`AggregationNetwork.logit_scale`)


def cosine_logits(a, b, logit_scale: float = LOGIT_SCALE):
  """exp(s) cos(a_i, b_j) between every position of two [H, W, C] maps: [HW, HW]."""
  a = a.reshape(-1, a.shape[-1])
  b = b.reshape(-1, b.shape[-1])
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  return math.exp(logit_scale) * a @ b.T


def symmetric_correspondence_loss(feat_a, feat_b, idx_a, idx_b, valid=None):
  """(CE(logits_ab[idx_a], idx_b) + CE(logits_ba[idx_b], idx_a)) / 2, means over the keypoints
  (`task-corres.py::compute_clip_loss`); idx are flat row-major positions; `valid` masks padding."""
  valid = jnp.ones(idx_a.shape, bool) if valid is None else valid
  w = valid / jnp.maximum(valid.sum(), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels
  ce_ab = ce(cosine_logits(feat_a, feat_b)[idx_a], idx_b)
  ce_ba = ce(cosine_logits(feat_b, feat_a)[idx_b], idx_a)
  return (jnp.sum(w * ce_ab) + jnp.sum(w * ce_ba)) / 2


def with_sparsity(ce, neg_sparsity, weight):
  """ce + weight * L_sp * sg(ce) / sg(-L_sp), L_sp = -mean ||alpha||_2: the sparsity term rescaled
  to the size of the cross-entropy (`task-pixel.py`)."""
  sg = jax.lax.stop_gradient
  return ce + weight * neg_sparsity * sg(ce) / sg(-neg_sparsity)


def sparsity_walk_init():
  """(weight, last weight, last loss improvement, last logged loss, has a logged loss); distinct
  buffers, as the trainer donates the state."""
  return {k: jnp.zeros((), jnp.float32) for k in ("weight", "last_weight", "last_delta", "loss_log")
          } | {"logged": jnp.zeros((), bool)}


def sparsity_walk(state, loss, step, rng, delta: float = 1e-5, every: int = 5):
  """The official random walk of the sparsity weight, every `every` iterations: the improvement
  d = previous logged loss - loss; if d beats the decayed best improvement (or with probability
  1/20 regardless) the current weight is kept as the base; the base improvement decays by 0.9; the
  next weight is max(0, base + one of {-delta, 0, +delta})."""
  k_accept, k_move = jax.random.split(rng)
  d = jnp.where(state["logged"], state["loss_log"] - loss, 0.0)
  accept = (jax.random.randint(k_accept, (), 0, 20) == 0) | (d > state["last_delta"])
  last_weight = jnp.where(accept, state["weight"], state["last_weight"])
  last_delta = jnp.where(accept, d, state["last_delta"]) * 0.9
  move = (jax.random.randint(k_move, (), 0, 3) - 1).astype(jnp.float32) * delta
  new = {"weight": jnp.maximum(0.0, last_weight + move), "last_weight": last_weight,
         "last_delta": last_delta, "loss_log": jnp.asarray(loss, jnp.float32),
         "logged": jnp.ones((), bool)}
  on = (step + 1) % every == 0
  return jax.tree.map(lambda a, b: jnp.where(on, a, b), new, state)

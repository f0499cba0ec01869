"""Losses of the GATE heads (Meng et al. 2024, "Suppress Content Shift", github.com/Darkbblue/
diffusion-content-shift): the correspondence aggregator's symmetric CLIP-style loss at a fixed
temperature, the pixel aggregator's rescaled sparsity term with its random-walk weight, and the
Lovasz-softmax term of the semantic-segmentation head's decode loss."""
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


def lovasz_softmax(logits, labels, ignore_index: int = 255):
  """Multi-class Lovasz-softmax (Berman et al. 2018, "The Lovasz-Softmax loss", Alg. 1 / Eq. 8;
  mmseg `lovasz_softmax(classes="present", per_image=False)`): over all non-ignored pixels of the
  batch, per class c present in the labels, the errors |[y = c] - p_c| sorted in decreasing order
  dotted with the gradient of the Lovasz extension of the Jaccard loss at the sorted foreground,
  averaged over the present classes. logits [..., C], labels [...]."""
  c = logits.shape[-1]
  probs = jax.nn.softmax(logits, -1).reshape(-1, c)
  labels = labels.reshape(-1)
  valid = labels != ignore_index
  fg = jax.nn.one_hot(jnp.where(valid, labels, 0), c) * valid[:, None]
  errors = jnp.abs(fg - probs)
  # ignored pixels sort last (key -1) and weigh 0, leaving the valid prefix sums unchanged
  order = jnp.argsort(-jnp.where(valid[:, None], errors, -1.0), axis=0)
  err_sorted = jnp.take_along_axis(jnp.where(valid[:, None], errors, 0.0), order, axis=0)
  fg_sorted = jnp.take_along_axis(fg, order, axis=0)
  gts = fg_sorted.sum(0)
  intersection = gts - jnp.cumsum(fg_sorted, 0)
  union = gts + jnp.cumsum(1.0 - fg_sorted, 0)
  jaccard = 1.0 - intersection / union
  grad = jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)
  per_class = jnp.sum(err_sorted * jax.lax.stop_gradient(grad), axis=0)
  present = gts > 0
  return jnp.sum(jnp.where(present, per_class, 0.0)) / jnp.maximum(present.sum(), 1)

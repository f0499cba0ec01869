"""Continual-learning losses (pure functions of arrays).

- ``kd_loss`` (Hinton et al. 2015; LwF, Li and Hoiem 2017, Eq. 3; iCaRL as implemented in PyCIL and
  GiantJun/CL_Pytorch ``_KD_loss``): ``-sum_c softmax(t / T)_c log softmax(s / T)_c`` per example,
  without the T^2 factor (as those codes).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
            ) -> jax.Array:
  """[B] soft cross-entropy of the student against the teacher at `temperature`."""
  soft = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  return -jnp.sum(soft * log_p, axis=-1)


# --- Adaptive knowledge distillation (Chen, Liu, Wang, Zheng, arXiv 2301.07316) ------------------
# The paper's text was not reachable and there is no public code: what follows is the [inferred]
# formulation built from its abstract (multi-level old knowledge integrated into every block,
# old-model prediction uncertainty weighting new vs old knowledge, CutMix on exemplars).

def attention_map(features: jax.Array) -> jax.Array:
  """[B, H, W] spatial attention of a block (Zagoruyko and Komodakis, ICLR 2017, "Paying More
  Attention to Attention": mean over channels of the squared activations), before normalising."""
  return jnp.mean(jnp.square(features.astype(jnp.float32)), axis=-1)


def _normalise(maps: jax.Array) -> jax.Array:
  flat = maps.reshape(maps.shape[0], -1)
  return flat / jnp.maximum(jnp.linalg.norm(flat, axis=-1, keepdims=True), 1e-12)


def integrated_feature_loss(student_blocks, teacher_blocks, weights: jax.Array) -> jax.Array:
  """[B] ``sum_l || n(A(S_l)) - n(sum_k w[l, k] R_l(n(A(T_k)))) ||^2``: every student block l
  distils a mixture of all teacher blocks k, each teacher attention map A(T_k) L2-normalised (n)
  and resized (R_l, bilinear) to block l's resolution. `weights` ``[L, L]`` rows sum to one
  (softmax of learnable logits: adaptive integration; the identity: block-to-block distillation;
  uniform: averaged multi-level distillation)."""
  teacher = [_normalise(attention_map(t)).reshape(attention_map(t).shape)
             for t in teacher_blocks]
  total = 0.0
  for l, s in enumerate(student_blocks):
    h, w = s.shape[1], s.shape[2]
    target = sum(weights[l, k] * jax.image.resize(t, (t.shape[0], h, w), "bilinear")
                 for k, t in enumerate(teacher))
    diff = _normalise(attention_map(s)) - _normalise(target)
    total = total + jnp.sum(jnp.square(diff), axis=-1)
  return total


def prediction_uncertainty(old_logits: jax.Array) -> jax.Array:
  """[B] normalised entropy ``H(softmax(old_logits)) / log(C_old)`` in [0, 1] of the old model's
  prediction over the old classes (0: confident, 1: uniform)."""
  logp = jax.nn.log_softmax(old_logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1) / jnp.log(float(old_logits.shape[-1]))


def uncertainty_weighted(ce: jax.Array, distill: jax.Array, u: jax.Array | None) -> jax.Array:
  """[B] ``(1 - u) * distill + u * ce``; without uncertainty (u None) the fixed sum
  ``ce + distill``."""
  if u is None:
    return ce + distill
  return (1.0 - u) * distill + u * ce


def exemplar_cutmix(rng: jax.Array, images: jax.Array, is_exemplar: jax.Array, alpha: float
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """CutMix (Yun et al. 2019) applied only among the exemplars of a batch: exemplar k (in batch
  order) receives a box of the next exemplar (cyclically); other rows are untouched. Returns
  (images, partner index [B], lam: the kept area fraction, 1 for untouched rows [B])."""
  b = images.shape[0]
  order = jnp.argsort(~is_exemplar, stable=True)  # exemplars first, in batch order
  n = jnp.maximum(jnp.sum(is_exemplar), 1)
  pos = jnp.argsort(order)  # position of each row among `order`
  partner = jnp.where(is_exemplar, order[(pos + 1) % n], jnp.arange(b))
  k_lam, k_y, k_x = jax.random.split(rng, 3)
  lam = jax.random.beta(k_lam, alpha, alpha)
  h, w = images.shape[1], images.shape[2]
  cut_h = jnp.round(h * jnp.sqrt(1.0 - lam)).astype(jnp.int32)
  cut_w = jnp.round(w * jnp.sqrt(1.0 - lam)).astype(jnp.int32)
  cy, cx = jax.random.randint(k_y, [], 0, h), jax.random.randint(k_x, [], 0, w)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
  mixed = jnp.where(box[None, :, :, None] & is_exemplar[:, None, None, None], images[partner],
                    images)
  kept = 1.0 - jnp.sum(box) / (h * w)
  return mixed, partner, jnp.where(is_exemplar & (partner != jnp.arange(b)), kept, 1.0)

"""SGIEL's losses (Feng et al., "Shape-Erased Feature Learning for Visible-Infrared Person
Re-Identification", CVPR 2023, arXiv 2304.04205, Sec. 3.2-3.4; official jiawei151/SGIEL_VIReID
`loss.py` and `train.py`).

Batches are paired by position: row b of the visible half and row b of the infrared half have the
same identity. The batch-hard triplet loss is `losses.metric_learning.batch_hard_triplet`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_cross_entropy(new_logits: jax.Array, old_logits: jax.Array) -> jax.Array:
  """The code's `sce`: `mean_b sum_c -softmax(old)_c log softmax(new)_c`, `old` detached (a soft
  cross-entropy, not a KL divergence)."""
  target = jax.lax.stop_gradient(jax.nn.softmax(old_logits, axis=-1))
  return jnp.mean(jnp.sum(-target * jax.nn.log_softmax(new_logits, axis=-1), axis=-1))


def cross_modal_alignment(logit_vis: jax.Array, logit_ir: jax.Array) -> jax.Array:
  """`sce(vis, ir) + sce(ir, vis)` with the rows paired by position (the code's `loss_kl_rgbir`)."""
  return soft_cross_entropy(logit_vis, logit_ir) + soft_cross_entropy(logit_ir, logit_vis)


def least_similar_partners(z_vis: jax.Array, z_ir: jax.Array, labels: jax.Array
                           ) -> tuple[jax.Array, jax.Array]:
  """For each visible row the infrared row of the same identity whose shape projection is least
  cosine-similar, and vice versa (the code's `target4rgb`, `target4ir`; `labels` are the visible
  half's, equal to the infrared half's by pairing)."""
  a = z_vis / jnp.maximum(jnp.linalg.norm(z_vis, axis=-1, keepdims=True), 1e-12)
  b = z_ir / jnp.maximum(jnp.linalg.norm(z_ir, axis=-1, keepdims=True), 1e-12)
  cos = jax.lax.stop_gradient(a @ b.T)
  same = labels[:, None] == labels[None, :]
  masked = jnp.where(same, cos, jnp.inf)
  return jnp.argmin(masked, axis=1), jnp.argmin(masked, axis=0)


def shape_complementary(logit2: jax.Array, z_shape: jax.Array, labels: jax.Array) -> jax.Array:
  """The code's `shape_cpmt_cross_modal_ce`: cross-modal soft cross-entropy of the shape-erased
  logits `logit2 [2n, K]`, both with the positional partner and with the least shape-similar
  partner of the same identity (chosen on the shape stream's projections `z_shape [2n, d]`)."""
  n = labels.shape[0]
  l_vis, l_ir = logit2[:n], logit2[n:]
  to_ir, to_vis = least_similar_partners(z_shape[:n], z_shape[n:], labels)
  least = soft_cross_entropy(l_vis, l_ir[to_ir]) + soft_cross_entropy(l_ir, l_vis[to_vis])
  return least + cross_modal_alignment(l_vis, l_ir)


def shape_consistency(z: jax.Array, z_shape_teacher: jax.Array, logit_shape_teacher: jax.Array,
                      w_shape: jax.Array) -> jax.Array:
  """`mean_b mean_d (z - z_s^ema)^2 + sce(z W_shape, logit_shape^ema)`: the student's shape
  projection z = f P of each image against the EMA teacher's shape stream on its shape map;
  `w_shape [d, K]` is `classifier_shape`'s kernel, detached (the code's `loss_estimate`)."""
  mse = jnp.mean((z - jax.lax.stop_gradient(z_shape_teacher)) ** 2)
  return mse + soft_cross_entropy(z @ jax.lax.stop_gradient(w_shape), logit_shape_teacher)


def orthogonality(p_hat: jax.Array) -> jax.Array:
  """`mean_j sum_i |(P^^T P^ - I)_ji|` of the column-normalised projection (the code's
  `loss_ortho`)."""
  inner = p_hat.T @ p_hat
  return jnp.mean(jnp.sum(jnp.abs(inner - jnp.eye(inner.shape[0], dtype=inner.dtype)), axis=1))


def gradient_norm_weights(grad_complementary: jax.Array, grad_consistency: jax.Array
                          ) -> tuple[jax.Array, jax.Array]:
  """`(w1, w2)` from the per-sample gradients `[B, C]` of L_id2 + L_cpmt (g_c) and of L_est (g_e)
  with respect to the pooled features: with `g = mean_b ||grad_b||`, `w1 = 2 g_e / (g_c + g_e)`
  multiplies L_est and `w2 = 2 g_c / (g_c + g_e)` multiplies L_id2 and L_cpmt; no gradient flows
  through them (the code's re-weighting)."""
  g_c = jnp.mean(jnp.linalg.norm(grad_complementary, axis=-1))
  g_e = jnp.mean(jnp.linalg.norm(grad_consistency, axis=-1))
  w1, w2 = 2.0 * g_e / (g_c + g_e), 2.0 * g_c / (g_c + g_e)
  return jax.lax.stop_gradient(w1), jax.lax.stop_gradient(w2)

"""Losses of the video-language methods: retrieval (CLIP4Clip, TMVM) and grounding (TubeDETR,
STVGFormer). Arrays in, arrays out.

Retrieval.
- `l2_normalise(x) = x / ||x||` (last axis).
- `mean_pooled(frames [B, T, D], mask [B, T])`: CLIP4Clip's parameter-free "meanP" video embedding:
  normalise each frame, masked mean over frames (a mask sum of 0 counts as 1), normalise again
  (ArrowLuo/CLIP4Clip `modules/modeling.py`, `_loose_similarity` and
  `_mean_pooling_for_similarity_visual`).
- `prototype_similarity(text [Q, D], prototypes [V, K, D], scale)`: TMVM's text-adaptive matching,
  `S_qv = scale * max_k <t_q, p_vk>` (Lin et al., NeurIPS 2022, arXiv 2209.13307, abstract: "the
  similarity is determined by the most similar prototype"); with K = 1 it is CLIP4Clip's
  `logit_scale * t @ v.T`.
- `symmetric_cross_entropy(S [B, B])`: `(CE(S, diag) + CE(S^T, diag)) / 2`, CLIP4Clip's `CrossEn`
  in both directions (`modules/until_module.py`).
- `prototype_variance(A [B, N, K], mask [B, N])` [inferred]: `-sum_n Var_k(A_nk)`, mean over the
  batch, where `A[:, :, k]` is prototype k's attention over the N tokens (sums to 1). It is 0 when
  every prototype attends alike and -(1 - 1/K) when each attends to its own single token, so the
  weight lambda acts on an O(1) term. The paper's exact form is not public; the notes' alternative
  `prototype_overlap` (mean over pairs k != k' of <A_k, A_k'>, in [0, 1]) is the other option.

Grounding (TubeDETR, Yang et al. CVPR 2022; antoyang/TubeDETR `models/tubedetr.py`, SetCriterion).
- `sted_kl(logits [B, T, 2], start [B], end [B], mask [B, T], sigma)`: `loss_sted`: targets
  `q(t) ∝ exp(-(t - t*)^2 / (2 sigma^2)) + 1e-6`, L1-normalised over all T positions;
  `p = softmax_t(logits)` with padded positions at -1e32; `sum_t p log((p + 1e-6) / q)` over the
  real positions, for start and for end, summed; the mean is over all B*T positions (TubeDETR's
  `.mean()` of the masked [B, T] map).
- `box_l1` and `box_giou` (`loss_boxes`): on (cx, cy, w, h) boxes of the frames inside the GT tube,
  `sum |b - b*| / n` and `sum (1 - GIoU) / n`, n the number of such frames.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalise(x, axis=-1):
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


def mean_pooled(frames, mask):
  frames = l2_normalise(frames)
  m = mask.astype(frames.dtype)[..., None]
  total = jnp.sum(m, axis=1)
  pooled = jnp.sum(frames * m, axis=1) / jnp.where(total == 0, 1.0, total)
  return l2_normalise(pooled)


def prototype_similarity(text, prototypes, scale):
  return scale * jnp.max(jnp.einsum("qd,vkd->qvk", text, prototypes), axis=-1)


def symmetric_cross_entropy(sim):
  def one_way(s):
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(s, axis=-1)))
  return 0.5 * (one_way(sim) + one_way(sim.T))


def prototype_variance(attn, mask=None):
  """`-mean_b sum_n Var_k(A_bnk)` (module docstring); padded tokens hold A = 0 and add nothing."""
  var = jnp.var(attn, axis=-1)
  if mask is not None:
    var = var * mask
  return -jnp.mean(jnp.sum(var, axis=-1))


def prototype_overlap(attn, mask=None):
  """Mean over pairs k != k' of <A_k, A_k'> (the notes' alternative), mean over the batch."""
  k = attn.shape[-1]
  gram = jnp.einsum("bnk,bnj->bkj", attn, attn)
  off = jnp.sum(gram, axis=(1, 2)) - jnp.trace(gram, axis1=1, axis2=2)
  return jnp.mean(off) / max(k * (k - 1), 1)


def sted_kl(logits, start, end, mask, sigma: float = 1.0):
  eps = 1e-6
  t = jnp.arange(logits.shape[1])[None, :]
  logits = jnp.where(mask[:, :, None], logits, -1e32)

  def one(l, target):
    q = jnp.exp(-((t - target[:, None]) ** 2) / (2 * sigma ** 2)) + eps
    q = q / jnp.sum(jnp.abs(q), axis=1, keepdims=True)
    p = jax.nn.softmax(l, axis=1)
    return p * jnp.log((p + eps) / q) * mask
  return jnp.mean(one(logits[..., 0], start) + one(logits[..., 1], end))


def cxcywh_to_xyxy(b):
  cx, cy, w, h = jnp.moveaxis(b, -1, 0)
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def giou(a, b):
  """Generalised IoU of matching (x0, y0, x1, y1) boxes [..., 4] (Rezatofighi et al. 2019)."""
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
  lt, rb = jnp.maximum(a[..., :2], b[..., :2]), jnp.minimum(a[..., 2:], b[..., 2:])
  inter = jnp.prod(jnp.clip(rb - lt, 0), axis=-1)
  union = area(a) + area(b) - inter
  hull = jnp.prod(jnp.clip(jnp.maximum(a[..., 2:], b[..., 2:])
                           - jnp.minimum(a[..., :2], b[..., :2]), 0), axis=-1)
  return inter / union - (hull - union) / hull


def box_l1(pred, target, mask):
  n = jnp.maximum(jnp.sum(mask), 1)
  return jnp.sum(jnp.abs(pred - target) * mask[..., None]) / n


def box_giou(pred, target, mask):
  n = jnp.maximum(jnp.sum(mask), 1)
  safe = jnp.where(mask[..., None], target, jnp.array([0.5, 0.5, 0.1, 0.1], target.dtype))
  g = giou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(safe))
  return jnp.sum((1 - g) * mask) / n

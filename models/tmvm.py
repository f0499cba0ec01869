"""TMVM: text-adaptive multiple visual prototype matching (Lin et al., NeurIPS 2022, arXiv
2209.13307).

From the paper's abstract: a video is described by K prototypes, each an adaptive aggregation of
the video's token features; a text's similarity to a video is that of its most similar prototype;
a variance loss makes the prototypes attend to different contents. The rest is [inferred] (the
paper's full text and code were not available): a mask head on the last-layer tokens,
`M = MLP(x) in R^{N x K}` (Linear D -> D/2, GELU, Linear D/2 -> K), `A = softmax_N(M)` over the
N = T (1 + P) tokens of the clip's real frames, `p_k = l2norm(sum_n A_nk l2norm(x_n))`.
Tokens are normalised before pooling so that K = 1 with `uniform_masks=True` (A uniform over each
real frame's class token) is exactly CLIP4Clip's mean-pooled "meanP" video embedding.

Towers: `vision` is any registered image model whose `tokens(images)` (or, for `models/vit.py`,
the pre-head token sequence) gives [N, 1 + P, Dv] with the class token first, applied to every
frame; `text` a registered text encoder `text(ids, mask) -> [B, L, Dt]` whose
`pooled(states, ids, mask)` is the sentence feature (BERT's [CLS]; CLIP's end-of-text state, as
CLIP4Clip). New layers `vision_proj` / `text_proj` map both into the joint `embed_dim` space;
`project=False` leaves them out for towers that already end in it (the CLIP towers
`clip_vit_b32_visual` / `clip_vit_b32_text` end in CLIP's `proj` / `text_projection`, so K = 1
with uniform masks is CLIP4Clip's meanP on the pretrained features). Frames arrive as uint8 and
are normalised with CLIP's pixel mean and std.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from losses import video as vl
from models._vision_layers import gelu, linear

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def normalise_frames(video):
  """uint8 [..., H, W, 3] -> float32 with CLIP's mean / std."""
  return (video.astype(jnp.float32) / 255.0 - CLIP_MEAN) / CLIP_STD


def frame_tokens(vision: nnx.Module, images):
  """[N, 1 + P, D] tokens of a batch of images, class token first."""
  if hasattr(vision, "tokens"):
    return vision.tokens(images)
  return vision._tokens(images)[0]  # models/vit.py ViT: normalised [cls] + patch tokens


def prototype_pool(x, logits, frame_mask):
  """`p_k = l2norm(sum_n A_nk l2norm(x_n))`, `A = softmax over the real tokens of logits[..., k]`.

  x [B, T, P, D] tokens, logits [B, T, P, K], frame_mask [B, T]; returns (prototypes [B, K, D],
  A [B, T * P, K]; a clip without real frames gets A = 0)."""
  b, t, p, d = x.shape
  real = jnp.broadcast_to(frame_mask[:, :, None, None], logits.shape)
  logits = jnp.where(real, logits, -jnp.inf).reshape(b, t * p, -1)
  attn = jax.nn.softmax(logits, axis=1)
  attn = jnp.where(jnp.isnan(attn), 0.0, attn)
  x = vl.l2_normalise(x.reshape(b, t * p, d))
  return vl.l2_normalise(jnp.einsum("bnk,bnd->bkd", attn, x)), attn


class MaskHead(nnx.Module):
  """Token -> K mask logits: Linear(D, D/2), GELU, Linear(D/2, K) [inferred]."""

  def __init__(self, dim, k, *, rngs):
    self.fc1 = linear(dim, dim // 2, rngs=rngs)
    self.fc2 = linear(dim // 2, k, rngs=rngs)

  def __call__(self, x):
    return self.fc2(gelu(self.fc1(x)))


class TMVM(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, embed_dim: int = 512, num_prototypes: int = 4,
               uniform_masks: bool = False, project: bool = True,
               logit_scale: float = math.log(1 / 0.07), rngs: nnx.Rngs):
    if uniform_masks and num_prototypes != 1:
      raise ValueError("uniform_masks (CLIP4Clip meanP) has one prototype: set num_prototypes=1.")
    self.vision = models.build(dict(vision), rngs=rngs)
    self.text = models.build(dict(text), rngs=rngs)
    if project:
      self.vision_proj = linear(self.vision.num_features, embed_dim, use_bias=False, rngs=rngs)
      self.text_proj = linear(self.text.num_features, embed_dim, use_bias=False, rngs=rngs)
    elif self.vision.num_features != embed_dim or self.text.num_features != embed_dim:
      raise ValueError(f"project=False needs towers that end in embed_dim={embed_dim}; got "
                       f"{self.vision.num_features} (vision), {self.text.num_features} (text).")
    else:
      self.vision_proj = self.text_proj = None
    self.mask_head = None if uniform_masks else MaskHead(embed_dim, num_prototypes, rngs=rngs)
    self.logit_scale = nnx.Param(jnp.asarray(logit_scale, jnp.float32))
    self.num_prototypes = num_prototypes

  def encode_text(self, ids, mask):
    """[B, D] unit text embeddings (the tower's pooling, projected)."""
    x = self.text.pooled(self.text(ids, mask), ids, mask)
    return vl.l2_normalise(x if self.text_proj is None else self.text_proj(x))

  def tokens(self, video):
    """[B, T, 1 + P, D] projected frame tokens of uint8 clips [B, T, H, W, 3]."""
    b, t = video.shape[:2]
    x = frame_tokens(self.vision, normalise_frames(video.reshape(b * t, *video.shape[2:])))
    x = x if self.vision_proj is None else self.vision_proj(x)
    return x.reshape(b, t, *x.shape[1:])

  def prototypes(self, video, frame_mask):
    """(prototypes [B, K, D] unit, attention A [B, N, K] over the N = T (1 + P) tokens)."""
    x = self.tokens(video)
    if self.mask_head is None:  # uniform over each real frame's class token
      logits = jnp.where(jnp.arange(x.shape[2]) == 0, 0.0, -jnp.inf)
      logits = jnp.broadcast_to(logits[None, None, :, None], (*x.shape[:3], 1))
    else:
      logits = self.mask_head(x)
    return prototype_pool(x, logits, frame_mask)

  def scale(self):
    return jnp.exp(self.logit_scale[...])

  def __call__(self, video, frame_mask, ids, mask):
    """(similarity [B_text, B_video], attention) of a batch of pairs."""
    protos, attn = self.prototypes(video, frame_mask)
    return vl.prototype_similarity(self.encode_text(ids, mask), protos, self.scale()), attn


@models.register("tmvm")
def tmvm(*, rngs: nnx.Rngs, **kw):
  """TMVM over registered towers (`vision`, `text` blocks)."""
  return TMVM(rngs=rngs, **kw)

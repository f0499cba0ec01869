"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021, "Is Space-Time
Attention All You Need for Video Understanding?", Sec. 3, Eq. 7-8 and Fig. 1 "T+S").

Official code: facebookresearch/TimeSformer `timesformer/models/vit.py` (`VisionTransformer` with
`attention_type="divided_space_time"`), whose names we keep so its state dicts convert one to one
(converter `timesformer`: `patch_embed/proj`, `cls_token`, `pos_embed`, `time_embed`,
`blocks/i/{temporal_norm1, temporal_attn/{qkv,proj}, temporal_fc, norm1, attn/{qkv,proj}, norm2,
mlp/{fc1,fc2}}`, `norm`, `head`). Per block, with the N*T patch tokens ordered patch-major
(token n*T + t, as the official `(h w t)` layout):
- temporal: every patch position attends over the T frames, `x_p += temporal_fc(TAttn(LN(x_p)))`;
- spatial: every frame attends over its N patches plus the class token;
  the class token's T outputs are averaged;
- `x = [cls ; x_p] + [mean_t cls_res ; spatial_res]`, then `x += MLP(LN(x))`.
Embedding: per-frame patchify conv, `+ pos_embed` (class token gets `pos_embed[0]`),
`+ time_embed[t]` on the patches. LayerNorm eps 1e-6, exact GELU, qkv with bias.

`model.tokens(video)` [B, 1 + N*T, D] (final LN applied) for video NHWC float [B, T, H, W, 3];
`model(video)` the class-token feature (`forward_features`), or logits with `num_classes`.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from models import convert
from models._vision_layers import (Attention, Mlp, conv, drop_path, layer_norm, linear,
                                   trunc_normal_init)

convert.register("timesformer")(convert.TorchStateDict)


class Block(nnx.Module):
  def __init__(self, dim, heads, mlp_ratio, dpr, *, dtype, rngs):
    self.norm1 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.attn = Attention(dim, heads, dtype=dtype, rngs=rngs)
    self.temporal_norm1 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.temporal_attn = Attention(dim, heads, dtype=dtype, rngs=rngs)
    self.temporal_fc = linear(dim, dim, init="trunc", dtype=dtype, rngs=rngs)
    self.norm2 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)
    self.drop_path = drop_path(dpr, 3, rngs=rngs)

  def __call__(self, x, t):
    b, _, d = x.shape
    patches = x[:, 1:]
    n = patches.shape[1] // t
    xt = patches.reshape(b * n, t, d)  # patch-major: token n*T + t
    res = self.drop_path(self.temporal_attn(self.temporal_norm1(xt))).reshape(b, n * t, d)
    xt = patches + self.temporal_fc(res)
    cls = x[:, :1]
    xs = xt.reshape(b, n, t, d).transpose(0, 2, 1, 3).reshape(b * t, n, d)
    xs = jnp.concatenate([jnp.repeat(cls, t, axis=0), xs], axis=1)
    rs = self.drop_path(self.attn(self.norm1(xs)))
    cls_res = jnp.mean(rs[:, 0].reshape(b, t, d), axis=1, keepdims=True)
    rs = rs[:, 1:].reshape(b, t, n, d).transpose(0, 2, 1, 3).reshape(b, n * t, d)
    x = jnp.concatenate([cls, xt], axis=1) + jnp.concatenate([cls_res, rs], axis=1)
    return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nnx.Module):
  def __init__(self, cin, dim, patch, *, dtype, rngs):
    self.proj = conv(cin, dim, patch, patch, padding=0, dtype=dtype, rngs=rngs)


class TimeSformer(nnx.Module):
  def __init__(self, embed_dim=768, depth=12, num_heads=12, *, patch_size: int = 16,
               img_size: int = 224, num_frames: int = 8, in_channels: int = 3,
               mlp_ratio: float = 4.0, drop_path: float = 0.1, num_classes: int | None = None,
               dtype=jnp.float32, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.dtype = dtype
    self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size, dtype=dtype, rngs=rngs)
    n = (img_size // patch_size) ** 2
    init = trunc_normal_init(0.02)
    self.cls_token = nnx.Param(init(rngs.params(), (1, 1, embed_dim)))
    self.pos_embed = nnx.Param(init(rngs.params(), (1, n + 1, embed_dim)))
    self.time_embed = nnx.Param(jnp.zeros((1, num_frames, embed_dim)))
    dpr = np.linspace(0.0, drop_path, depth).tolist()
    self.blocks = nnx.List([Block(embed_dim, num_heads, mlp_ratio, dpr[i], dtype=dtype, rngs=rngs)
                            for i in range(depth)])
    self.norm = layer_norm(embed_dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.head = (linear(embed_dim, num_classes, init="trunc", dtype=dtype, rngs=rngs)
                 if num_classes else None)
    self.num_features = embed_dim

  def tokens(self, video):
    b, t = video.shape[:2]
    x = self.patch_embed.proj(video.reshape(b * t, *video.shape[2:]).astype(self.dtype))
    x = x.reshape(b * t, -1, x.shape[-1])  # row-major patches, as torch's flatten(2)
    d = x.shape[-1]
    pos = self.pos_embed[...].astype(x.dtype)
    x = x + pos[:, 1:]
    x = x.reshape(b, t, -1, d).transpose(0, 2, 1, 3) + self.time_embed[...][:, None, :t]
    x = x.reshape(b, -1, d)
    cls = jnp.broadcast_to(self.cls_token[...] + pos[:, :1], (b, 1, d)).astype(x.dtype)
    x = jnp.concatenate([cls, x], axis=1)
    for blk in self.blocks:
      x = blk(x, t)
    return self.norm(x)

  def __call__(self, video):
    x = self.tokens(video)[:, 0]
    return self.head(x) if self.head is not None else x


@models.register("timesformer_b16")
def timesformer_b16(*, rngs: nnx.Rngs, **kw):
  """TimeSformer-B/16 (768 wide, 12 blocks, 12 heads; divided space-time attention, 8 frames)."""
  return TimeSformer(rngs=rngs, **kw)

"""Vision Transformer ViT-B/16 and ViT-L/16 (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words", Eq. 1-4), pre-norm blocks, class-token pooling; timm `vision_transformer` layout and names
(`patch_embed/proj`, `cls_token`, `pos_embed`, `blocks/i/{norm1,attn/qkv,attn/proj,norm2,mlp/fc1,
mlp/fc2}`, `norm`, `head`) so timm state dicts convert one to one (`models.convert`). NHWC inputs.

`model(x)` gives logits (or the class-token feature when `num_classes=None`); `model.features(x)`
the normalised patch tokens as a map [B, H/16, W/16, D].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import peft
from models._vision_layers import (Attention, Mlp, conv, drop_path, layer_norm, linear,
                                   register_variants, run_block, trunc_normal_init)

VARIANTS = {  # patch 16
    "vit_b16": dict(embed_dim=768, depth=12, num_heads=12),
    "vit_l16": dict(embed_dim=1024, depth=24, num_heads=16),
}


class Block(nnx.Module):
  def __init__(self, dim, num_heads, mlp_ratio, dpr, *, dtype, rngs, adapter=None):
    self.norm1 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.norm2 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    hidden = int(dim * mlp_ratio)
    if adapter:
      self.attn = peft.AdaptedAttention(dim, num_heads, adapter, dtype=dtype, rngs=rngs)
      self.mlp = peft.AdaptedMlp(dim, hidden, adapter, dtype=dtype, rngs=rngs)
    else:
      self.attn = Attention(dim, num_heads, dtype=dtype, rngs=rngs)
      self.mlp = Mlp(dim, hidden, dtype=dtype, rngs=rngs)
    self.drop_path = drop_path(dpr, 3, rngs=rngs)

  def __call__(self, x):
    x = x + self.drop_path(self.attn(self.norm1(x)))
    return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nnx.Module):
  def __init__(self, in_channels, dim, patch, *, dtype, rngs):
    self.proj = conv(in_channels, dim, patch, patch, padding=0, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.proj(x)


class ViT(nnx.Module):
  """ViT: patchify conv, [cls] + patches + learned position embedding, pre-norm blocks, LN, head.

  drop_path: maximum stochastic-depth rate (linear over blocks); remat: per-block rematerialisation;
  adapter: LoRA / kernelized-LoRA (SNELL) adapters on every block's q, k, v, proj, fc1, fc2 (the
  options of `models.peft.adapter_options`, e.g. `{kind: kernel, rank: 8, sparsity: 0.5}`).
  """

  def __init__(self, embed_dim=768, depth=12, num_heads=12, *, patch_size: int = 16,
               img_size: int = 224, in_channels: int = 3, num_classes: int | None = 1000,
               mlp_ratio: float = 4.0, drop_path: float = 0.1, dtype=jnp.float32,
               remat: bool = False, adapter: dict | None = None, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)  # accepts "bfloat16" from configs
    self.dtype, self.remat = dtype, remat
    self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size, dtype=dtype, rngs=rngs)
    n = (img_size // patch_size) ** 2
    self.cls_token = nnx.Param(1e-6 * jax.random.normal(rngs.params(), (1, 1, embed_dim)))
    self.pos_embed = nnx.Param(trunc_normal_init(0.02)(rngs.params(), (1, n + 1, embed_dim)))
    dpr = np.linspace(0.0, drop_path, depth).tolist()
    adapter = peft.adapter_options(adapter) if adapter else None
    self.blocks = nnx.List([Block(embed_dim, num_heads, mlp_ratio, dpr[i], dtype=dtype, rngs=rngs,
                                  adapter=adapter) for i in range(depth)])
    self.norm = layer_norm(embed_dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.num_features = embed_dim
    self.head = (linear(embed_dim, num_classes, init="trunc", dtype=dtype, rngs=rngs)
                 if num_classes else None)

  def _tokens(self, x):
    x = self.patch_embed(x.astype(self.dtype))
    b, h, w, c = x.shape
    cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c))
    x = jnp.concatenate([cls, x.reshape(b, h * w, c)], axis=1) + self.pos_embed[...].astype(x.dtype)
    for blk in self.blocks:
      x = run_block(blk, x, self.remat)
    return self.norm(x), (h, w)

  def features(self, x):
    t, (h, w) = self._tokens(x)
    return t[:, 1:].reshape(t.shape[0], h, w, -1)

  def __call__(self, x):
    t, _ = self._tokens(x)
    return self.head(t[:, 0]) if self.head is not None else t[:, 0]


register_variants(ViT, VARIANTS)

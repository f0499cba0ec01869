"""DilateFormer (Jiao et al. 2023, "DilateFormer: Multi-Scale Dilated Transformer for Visual
Recognition", IEEE TMM; official code JIAOJIAYUASD/dilateformer, models/dilateformer.py).

Multi-scale dilated attention (MSDA, paper Eq. 4-6): the channels and heads are split evenly over the
dilation rates r in `dilations`; for rate r every query attends to the 3x3 neighbourhood of keys and
values at offsets (p r, q r), p, q in {-1, 0, 1}. As in the official code (nn.Unfold with zero
padding r), neighbours outside the image are zero vectors that are NOT masked: they enter the softmax
with logit 0 and contribute value 0. Stages 1-2 use MSDA, stages 3-4 global multi-head attention;
every block starts with a depth-wise 3x3 conv position embedding (`cpe_per_block=True`).

Parameter paths are the official state-dict keys with '/' for '.', so `models.convert` only renames
leaves. Inputs are NHWC; compute runs in `dtype`, parameters are float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models._vision_layers import (Attention, Mlp, PooledClassifier, batch_norm, conv, drop_path,
                                   gelu, layer_norm, linear, register_variants, run_stages)

VARIANTS = {  # official dilateformer_{tiny,small,base}
    "dilateformer_tiny": dict(embed_dim=72, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "dilateformer_small": dict(embed_dim=72, depths=(3, 5, 8, 3), num_heads=(3, 6, 12, 24)),
    "dilateformer_base": dict(embed_dim=96, depths=(4, 8, 10, 3), num_heads=(3, 6, 12, 24)),
}


def dilated_neighbours(x, dilation: int, kernel_size: int = 3):
  """[B, H, W, C] -> [B, H, W, k*k, C]: the k x k neighbours at spacing `dilation`, zero outside.

  Neighbour j = (p, q) in row-major order over p, q in {-(k//2), ..., k//2}, as nn.Unfold orders them.
  """
  h, w = x.shape[1:3]
  pad = dilation * (kernel_size // 2)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  views = [xp[:, p * dilation:p * dilation + h, q * dilation:q * dilation + w]
           for p in range(kernel_size) for q in range(kernel_size)]
  return jnp.stack(views, axis=3)


def dilated_attention(q, k, v, dilation: int, num_heads: int, scale: float, kernel_size: int = 3):
  """Sliding-window dilated attention (paper Eq. 4) for one dilation group.

  q, k, v: [B, H, W, C_g] with C_g = num_heads * head_dim. Returns [B, H, W, C_g].
  """
  b, h, w, c = q.shape
  d = c // num_heads
  kn = dilated_neighbours(k, dilation, kernel_size).reshape(b, h, w, -1, num_heads, d)
  vn = dilated_neighbours(v, dilation, kernel_size).reshape(b, h, w, -1, num_heads, d)
  qh = q.reshape(b, h, w, num_heads, d)
  logits = jnp.einsum("bhwnd,bhwjnd->bhwnj", qh, kn) * jnp.asarray(scale, q.dtype)
  attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
  return jnp.einsum("bhwnj,bhwjnd->bhwnd", attn, vn).reshape(b, h, w, c)


class MultiDilateLocalAttention(nnx.Module):
  """MSDA (paper Eq. 5-6): 1x1 conv to q, k, v; heads split over dilations; concat; Linear."""

  def __init__(self, dim, num_heads, dilations=(1, 2, 3), kernel_size=3, *, dtype, rngs):
    if num_heads % len(dilations):
      raise ValueError(f"num_heads={num_heads} must be a multiple of len(dilations)={len(dilations)}.")
    self.dilations = tuple(dilations)
    self.kernel_size = kernel_size
    self.heads_per_group = num_heads // len(dilations)
    self.scale = (dim // num_heads) ** -0.5
    # Official: nn.Conv2d(dim, 3 dim, 1) -- a 1x1 conv, i.e. a Linear with conv (default) init.
    self.qkv = conv(dim, 3 * dim, 1, dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, init="trunc", dtype=dtype, rngs=rngs)

  def __call__(self, x):
    b, h, w, c = x.shape
    g = len(self.dilations)
    qkv = self.qkv(x).reshape(b, h, w, 3, g, c // g)
    outs = [dilated_attention(qkv[..., 0, i, :], qkv[..., 1, i, :], qkv[..., 2, i, :], r,
                              self.heads_per_group, self.scale, self.kernel_size)
            for i, r in enumerate(self.dilations)]
    return self.proj(jnp.concatenate(outs, axis=-1))


class GlobalAttention(Attention):
  """Multi-head self-attention over all H*W tokens of a [B, H, W, C] map (stages 3-4)."""

  def __call__(self, x):
    b, h, w, c = x.shape
    return super().__call__(x.reshape(b, h * w, c)).reshape(b, h, w, c)


class Block(nnx.Module):
  """x += DWConv3x3(x); x += DropPath(Attn(LN(x))); x += DropPath(MLP(LN(x)))."""

  def __init__(self, dim, num_heads, dilate: bool, dilations, mlp_ratio, dpr, *, dtype, rngs):
    self.pos_embed = conv(dim, dim, 3, groups=dim, dtype=dtype, rngs=rngs)
    self.norm1 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.attn = (MultiDilateLocalAttention(dim, num_heads, dilations, dtype=dtype, rngs=rngs)
                 if dilate else GlobalAttention(dim, num_heads, dtype=dtype, rngs=rngs))
    self.norm2 = layer_norm(dim, eps=1e-6, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)
    self.drop_path = drop_path(dpr, 4, rngs=rngs)

  def __call__(self, x):
    x = x + self.pos_embed(x)
    x = x + self.drop_path(self.attn(self.norm1(x)))
    return x + self.drop_path(self.mlp(self.norm2(x)))


class Downsample(nnx.Module):
  """PatchMerging 'conv3_2': conv3x3 stride 2 (C -> 2C, bias) + BatchNorm."""

  def __init__(self, cin, cout, *, dtype, rngs):
    self.proj = nnx.Dict({"0": conv(cin, cout, 3, 2, dtype=dtype, rngs=rngs),
                          "1": batch_norm(cout, dtype=dtype, rngs=rngs)})

  def __call__(self, x):
    return self.proj["1"](self.proj["0"](x))


class Stage(nnx.Module):
  def __init__(self, dim, depth, num_heads, dilate, dilations, mlp_ratio, dprs, downsample, *,
               dtype, rngs):
    self.blocks = nnx.List([Block(dim, num_heads, dilate, dilations, mlp_ratio, dprs[i],
                                  dtype=dtype, rngs=rngs) for i in range(depth)])
    self.downsample = Downsample(dim, 2 * dim, dtype=dtype, rngs=rngs) if downsample else None


class PatchEmbed(nnx.Module):
  """'overlaping' stem: conv3x3 s1, s2, s1 (BN, GELU after each), conv3x3 s2 to embed_dim; stride 4.

  Keys follow the official nn.Sequential indices (0, 1, 3, 4, 6, 7, 9)."""

  def __init__(self, in_channels, embed_dim, hidden=16, *, dtype, rngs):
    chans = [in_channels, hidden, 2 * hidden, 4 * hidden, embed_dim]
    layers = {}
    for i, s in enumerate((1, 2, 1, 2)):
      layers[str(3 * i)] = conv(chans[i], chans[i + 1], 3, s, use_bias=False, dtype=dtype, rngs=rngs)
      if i < 3:
        layers[str(3 * i + 1)] = batch_norm(chans[i + 1], dtype=dtype, rngs=rngs)
    self.proj = nnx.Dict(layers)

  def __call__(self, x):
    for i in range(3):
      x = gelu(self.proj[str(3 * i + 1)](self.proj[str(3 * i)](x)))
    return self.proj["9"](x)


class DilateFormer(PooledClassifier):
  """DilateFormer: stem (stride 4), 4 stages (MSDA, MSDA, global, global), LN, GAP, Linear.

  num_classes=None returns pooled features; `features(x)` the final map [B, H/32, W/32, C] (pre-norm).
  drop_path: maximum stochastic-depth rate, linearly increasing over blocks (0.1 in the paper).
  remat: rematerialise each block in the backward pass.
  """

  def __init__(self, embed_dim=72, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), *,
               in_channels: int = 3, num_classes: int | None = 1000, dilations=(1, 2, 3),
               mlp_ratio: float = 4.0, drop_path: float = 0.1,
               dilate_attention=(True, True, False, False), dtype=jnp.float32, remat: bool = False,
               rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)  # accepts "bfloat16" from configs
    self.dtype = dtype
    self.remat = remat
    self.patch_embed = PatchEmbed(in_channels, embed_dim, dtype=dtype, rngs=rngs)
    dpr = np.linspace(0.0, drop_path, sum(depths)).tolist()
    stages = []
    for i, depth in enumerate(depths):
      start = sum(depths[:i])
      stages.append(Stage(embed_dim * 2 ** i, depth, num_heads[i], dilate_attention[i], dilations,
                          mlp_ratio, dpr[start:start + depth], i < len(depths) - 1,
                          dtype=dtype, rngs=rngs))
    self.stages = nnx.List(stages)
    self.num_features = embed_dim * 2 ** (len(depths) - 1)
    self.norm = layer_norm(self.num_features, eps=1e-6, dtype=dtype, rngs=rngs)
    self.head = (linear(self.num_features, num_classes, init="trunc", dtype=dtype, rngs=rngs)
                 if num_classes else None)

  def features(self, x):
    return run_stages(self.stages, self.patch_embed(x.astype(self.dtype)), self.remat)


register_variants(DilateFormer, VARIANTS)

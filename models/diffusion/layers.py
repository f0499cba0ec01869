"""Building blocks of the Stable Diffusion UNet, ControlNet and VAE (diffusers `ResnetBlock2D`,
`Transformer2DModel`, `BasicTransformerBlock`, `Attention`, `Downsample2D`, `Upsample2D`), NHWC.

Module and parameter names follow diffusers, so a diffusers state-dict key is our path with '.'
for '/' (`models.convert.torch_key`). Each block records its activations through a
`taps.Recorder` under the official ids (see `models/diffusion/taps.py`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from models._vision_layers import conv, linear


def group_norm(c: int, groups: int, eps: float, *, rngs) -> nnx.GroupNorm:
  return nnx.GroupNorm(c, num_groups=groups, epsilon=eps, use_fast_variance=False, rngs=rngs)


class Identity(nnx.Module):
  """A parameter-free slot (diffusers' `Dropout(0)` in `to_out.1` / `ff.net.1`) keeping indices."""

  def __call__(self, x):
    return x


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0):
  """Sinusoidal embedding (diffusers `get_timestep_embedding`): frequencies
  exp(-ln(1e4) i / (dim/2 - shift)), [sin, cos] (flipped to [cos, sin])."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - shift))
  args = jnp.asarray(t, jnp.float32).reshape(-1)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  return emb


class TimestepEmbedding(nnx.Module):
  """Linear(d, 4C), SiLU, Linear(4C, 4C)."""

  def __init__(self, cin, dim, *, rngs):
    self.linear_1 = linear(cin, dim, rngs=rngs)
    self.linear_2 = linear(dim, dim, rngs=rngs)

  def __call__(self, x):
    return self.linear_2(jax.nn.silu(self.linear_1(x)))


class ResnetBlock2D(nnx.Module):
  """h = conv2(SiLU(GN(conv1(SiLU(GN(x))) + W SiLU(temb)))); out = shortcut(x) + h.
  Taps `res-increment` (h) and `res-out`."""

  def __init__(self, cin, cout, temb_channels, groups, eps, *, rngs):
    self.norm1 = group_norm(cin, groups, eps, rngs=rngs)
    self.conv1 = conv(cin, cout, 3, rngs=rngs)
    self.time_emb_proj = linear(temb_channels, cout, rngs=rngs) if temb_channels else None
    self.norm2 = group_norm(cout, groups, eps, rngs=rngs)
    self.conv2 = conv(cout, cout, 3, rngs=rngs)
    self.conv_shortcut = conv(cin, cout, 1, rngs=rngs) if cin != cout else None

  def __call__(self, x, temb=None, rec=None, tap=""):
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    if self.time_emb_proj is not None:
      h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
    h = self.conv2(jax.nn.silu(self.norm2(h)))
    if self.conv_shortcut is not None:
      x = self.conv_shortcut(x)
    out = x + h
    if rec is not None:
      rec.put(f"{tap}-increment", h)
      rec.put(f"{tap}-out", out)
    return out


class Attention(nnx.Module):
  """softmax(q k^T / sqrt(d)) v over `heads` heads, then to_out.0. q/k/v without bias (UNet) or with
  it (VAE). Taps `q`, `k`, `v` (projections before the head split) and `map` [B, heads, Nq, Nk]."""

  def __init__(self, dim, heads, context_dim=None, *, qkv_bias=False, rngs):
    context_dim = context_dim or dim
    self.heads = heads
    self.to_q = linear(dim, dim, use_bias=qkv_bias, rngs=rngs)
    self.to_k = linear(context_dim, dim, use_bias=qkv_bias, rngs=rngs)
    self.to_v = linear(context_dim, dim, use_bias=qkv_bias, rngs=rngs)
    self.to_out = nnx.List([linear(dim, dim, rngs=rngs), Identity()])

  def __call__(self, x, context=None, rec=None, tap="", hw=None, place=None):
    cross = context is not None
    context = x if context is None else context
    q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
    kv_hw = None if cross else hw
    want_map = store = False
    if rec is not None:
      rec.put(f"{tap}-q", q, hw)
      rec.put(f"{tap}-k", k, kv_hw)
      rec.put(f"{tap}-v", v, kv_hw)
      want_map, store = rec.wants_map(f"{tap}-map", place, cross, q.shape[1])
    b, n, c = q.shape
    split = lambda a: a.reshape(a.shape[0], a.shape[1], self.heads, c // self.heads)
    q, k, v = split(q), split(k), split(v)
    if want_map or store:  # explicit probabilities only when a map is asked for
      probs = jax.nn.softmax(
          jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(c // self.heads), axis=-1)
      out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
      if want_map:
        rec.values[f"{tap}-map"] = probs
      if store:
        rec.store_map(place, cross, probs.mean(axis=1))
    else:
      out = jax.nn.dot_product_attention(q, k, v)
    return self.to_out[0](out.reshape(b, n, c))


class GEGLU(nnx.Module):
  """proj: C -> 2 * inner, split into (h, g), h * gelu_erf(g)."""

  def __init__(self, dim, inner, *, rngs):
    self.proj = linear(dim, 2 * inner, rngs=rngs)

  def __call__(self, x):
    h, g = jnp.split(self.proj(x), 2, axis=-1)
    return h * jax.nn.gelu(g, approximate=False)


class FeedForward(nnx.Module):
  """net = [GEGLU(C -> 4C), Dropout(0), Linear(4C -> C)]. Tap `ffn-inner` (the GEGLU output)."""

  def __init__(self, dim, *, rngs):
    self.net = nnx.List([GEGLU(dim, 4 * dim, rngs=rngs), Identity(),
                         linear(4 * dim, dim, rngs=rngs)])

  def __call__(self, x, rec=None, tap="", hw=None):
    h = self.net[0](x)
    if rec is not None:
      rec.put(f"{tap}-inner", h, hw)
    return self.net[2](h)


class BasicTransformerBlock(nnx.Module):
  """x += attn1(LN(x)); x += attn2(LN(x), text); x += ff(LN(x)). Tap `out` (the block output)."""

  def __init__(self, dim, heads, context_dim, *, rngs):
    self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
    self.attn1 = Attention(dim, heads, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
    self.attn2 = Attention(dim, heads, context_dim, rngs=rngs)
    self.norm3 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
    self.ff = FeedForward(dim, rngs=rngs)

  def __call__(self, x, context, rec=None, tap="", hw=None, place=None):
    x = x + self.attn1(self.norm1(x), None, rec, f"{tap}-self", hw, place)
    x = x + self.attn2(self.norm2(x), context, rec, f"{tap}-cross", hw, place)
    x = x + self.ff(self.norm3(x), rec, f"{tap}-ffn", hw)
    if rec is not None:
      rec.put(f"{tap}-out", x, hw)
    return x


class Transformer2DModel(nnx.Module):
  """GN(eps 1e-6), proj_in (1x1 conv, or Linear with `linear_projection`), transformer blocks,
  proj_out, plus the input. Tap `vit-out`; blocks are `vit-block{k}`."""

  def __init__(self, dim, heads, context_dim, groups, depth=1, linear_projection=False, *, rngs):
    self.linear_projection = linear_projection
    self.norm = group_norm(dim, groups, 1e-6, rngs=rngs)
    proj = (lambda: linear(dim, dim, rngs=rngs)) if linear_projection else (
        lambda: conv(dim, dim, 1, rngs=rngs))
    self.proj_in = proj()
    self.transformer_blocks = nnx.List(
        [BasicTransformerBlock(dim, heads, context_dim, rngs=rngs) for _ in range(depth)])
    self.proj_out = proj()

  def __call__(self, x, context, rec=None, tap="", place=None):
    b, h, w, c = x.shape
    y = self.norm(x)
    if not self.linear_projection:
      y = self.proj_in(y)
    y = y.reshape(b, h * w, c)
    if self.linear_projection:
      y = self.proj_in(y)
    for k, block in enumerate(self.transformer_blocks):
      y = block(y, context, rec, f"{tap}-block{k}", (h, w), place)
    if self.linear_projection:
      y = self.proj_out(y)
    y = y.reshape(b, h, w, c)
    if not self.linear_projection:
      y = self.proj_out(y)
    out = y + x
    if rec is not None:
      rec.put(f"{tap}-out", out)
    return out


class Downsample2D(nnx.Module):
  """conv 3x3 stride 2: padding 1 (UNet) or right/bottom zero padding by one (VAE encoder)."""

  def __init__(self, c, *, asymmetric=False, rngs):
    self.asymmetric = asymmetric
    self.conv = conv(c, c, 3, 2, padding=0 if asymmetric else 1, rngs=rngs)

  def __call__(self, x, rec=None, tap=""):
    if self.asymmetric:
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    x = self.conv(x)
    if rec is not None:
      rec.put(f"{tap}-out", x)
    return x


class Upsample2D(nnx.Module):
  """Nearest x2, conv 3x3."""

  def __init__(self, c, *, rngs):
    self.conv = conv(c, c, 3, rngs=rngs)

  def __call__(self, x, rec=None, tap=""):
    x = self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
    if rec is not None:
      rec.put(f"{tap}-out", x)
    return x

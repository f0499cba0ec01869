"""PSLT (Wu et al. 2023, "PSLT: A Light-weight Vision Transformer with Ladder Self-Attention and
Progressive Shift", IEEE TPAMI; official code lazyGj/PSLT, classification/pslt.py).

Stem of three 3x3 convs (stride 2), MobileNetV2 blocks with squeeze-excitation (stages 1-2 and the
downsampling block to stage 3), then two stages of ladder self-attention blocks (paper Sec. 3.2):
the channels are split into 3 branches, each a Swin window-attention block (window 7, relative
position bias, light conv MLP). Progressive shift: branch 0 is not shifted, branch 1 is rolled by
-w//2 and branch 2 by +w//2 (its attention mask mirrored); none when the window covers the map.
Ladder link (paper Eq. 3): branch i > 0 computes q, k = Linear(LN(x_i)) and takes the previous
branch's output as values; its attention output is `proj(A v) + LN(x_i)`. Pixel-adaptive fusion
(Eq. 4): concat, per-token gate `X * sigmoid(W2 relu(W1 X))`, then `X + Linear(X)`.

Parameter paths are the official state-dict keys with '/' for '.', so `models.convert` only renames
leaves (buffers `relative_position_index` and `attn_mask` are recomputed, not stored). NHWC inputs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models._vision_layers import (PooledClassifier, batch_norm, conv, drop_path, gelu, layer_norm,
                                   linear, register_variants, run_stages, trunc_normal_init)

VARIANTS = {name: dict(embed_dim=d) for name, d in  # official PSLT_{tiny,,large}
            (("pslt_tiny", 24), ("pslt", 36), ("pslt_large", 48))}


@functools.lru_cache(maxsize=None)
def relative_position_index(ws: int) -> np.ndarray:
  """[ws^2, ws^2] index into the (2 ws - 1)^2 bias table (Swin)."""
  coords = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")).reshape(2, -1)
  rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (ws - 1)
  return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def window_partition(x, ws):
  """[B, H, W, C] -> [B * nW, ws*ws, C] (row-major windows)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // ws, ws, w // ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, ws * ws, c)


def window_reverse(x, ws, h, w):
  c = x.shape[-1]
  x = x.reshape(-1, h // ws, w // ws, ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, h, w, c)


@functools.lru_cache(maxsize=None)
def shift_mask(h: int, w: int, ws: int, shift: int, direction: int) -> np.ndarray:
  """[nW, ws^2, ws^2] additive mask (0 / -100) for windows of the rolled map, as the official code.

  direction 1: map rolled by -shift (regions at the bottom/right edge); 0: rolled by +shift
  (regions at the top/left edge)."""
  img = np.zeros((1, h, w, 1), np.float32)
  if direction == 1:
    sl = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
  else:
    sl = (slice(0, shift), slice(shift, ws), slice(ws, None))
  cnt = 0
  for hs in sl:
    for wsl in sl:
      img[:, hs, wsl, :] = cnt
      cnt += 1
  mw = np.asarray(window_partition(img, ws))[..., 0]
  diff = mw[:, None, :] - mw[:, :, None]
  return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class WindowAttention(nnx.Module):
  """Window attention with relative position bias. With `input_v`, q, k come from `kv(x)`, the
  values are the previous branch's output, and the result is `proj(A v) + x` (ladder link)."""

  def __init__(self, dim, ws, num_heads, input_v: bool, *, dtype, rngs):
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.input_v = input_v
    self.relative_position_bias_table = nnx.Param(
        trunc_normal_init(0.02)(rngs.params(), ((2 * ws - 1) ** 2, num_heads)))
    self.ws = ws
    if input_v:
      self.kv = linear(dim, 2 * dim, init="trunc", dtype=dtype, rngs=rngs)
    else:
      self.qkv = linear(dim, 3 * dim, init="trunc", dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, init="trunc", dtype=dtype, rngs=rngs)

  def __call__(self, x, mask=None, in_v=None):
    b, n, c = x.shape
    nh, d = self.num_heads, c // self.num_heads
    if self.input_v:
      kv = self.kv(x).reshape(b, n, 2, nh, d)
      q, k, v = kv[:, :, 0], kv[:, :, 1], in_v.reshape(b, n, nh, d)
    else:
      qkv = self.qkv(x).reshape(b, n, 3, nh, d)
      q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q = q * jnp.asarray(self.scale, q.dtype)
    logits = jnp.einsum("bnhd,bmhd->bhnm", q, k).astype(jnp.float32)
    bias = self.relative_position_bias_table[...][relative_position_index(self.ws).reshape(-1)]
    logits = logits + bias.reshape(n, n, nh).transpose(2, 0, 1)[None]
    if mask is not None:
      nw = mask.shape[0]
      logits = (logits.reshape(b // nw, nw, nh, n, n) + mask[None, :, None]).reshape(b, nh, n, n)
    attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = self.proj(jnp.einsum("bhnm,bmhd->bnhd", attn, v).reshape(b, n, c))
    return out + x if self.input_v else out


class MlpLight(nnx.Module):
  """1x1 conv, GELU, BN, dw3x3, GELU, BN, 1x1 conv, BN (hidden = dim * 4 / 4); official indices."""

  def __init__(self, dim, hidden, *, dtype, rngs):
    self.conv = nnx.Dict({
        "0": conv(dim, hidden, 1, dtype=dtype, rngs=rngs),
        "2": batch_norm(hidden, dtype=dtype, rngs=rngs),
        "3": conv(hidden, hidden, 3, groups=hidden, dtype=dtype, rngs=rngs),
        "5": batch_norm(hidden, dtype=dtype, rngs=rngs),
        "6": conv(hidden, dim, 1, dtype=dtype, rngs=rngs),
        "7": batch_norm(dim, dtype=dtype, rngs=rngs)})

  def __call__(self, x):
    c = self.conv
    x = c["2"](gelu(c["0"](x)))
    x = c["5"](gelu(c["3"](x)))
    return c["7"](c["6"](x))


class LadderSABlock(nnx.Module):
  """One branch: Swin block (shifted by `shift` in `direction`) with light MLP, optional ladder v."""

  def __init__(self, dim, resolution, num_heads, window_size, shift, direction, input_v, dpr, *,
               dtype, rngs):
    if min(resolution) <= window_size:
      shift, window_size = 0, min(resolution)
    self.ws, self.shift, self.direction = window_size, shift, direction
    self.norm1 = layer_norm(dim, dtype=dtype, rngs=rngs)
    self.attn = WindowAttention(dim, window_size, num_heads, input_v, dtype=dtype, rngs=rngs)
    self.drop_path = drop_path(dpr, 4, rngs=rngs)
    self.norm2 = layer_norm(dim, dtype=dtype, rngs=rngs)
    self.mlp = MlpLight(dim, dim, dtype=dtype, rngs=rngs)

  def _roll(self, x, sign):
    s = sign * (-self.shift if self.direction == 1 else self.shift)
    return jnp.roll(x, (s, s), axis=(1, 2)) if self.shift else x

  def __call__(self, x, in_v=None):
    b, h, w, c = x.shape
    y = self._roll(self.norm1(x), 1)
    v = window_partition(self._roll(in_v, 1), self.ws) if in_v is not None else None
    mask = jnp.asarray(shift_mask(h, w, self.ws, self.shift, self.direction)) if self.shift else None
    y = self.attn(window_partition(y, self.ws), mask, v)
    y = self._roll(window_reverse(y, self.ws, h, w), -1)
    x = x + self.drop_path(y)
    return x + self.drop_path(self.mlp(self.norm2(x)))


class ChannelGate(nnx.Module):
  """`x * sigmoid(fc2(relu(fc1(s))))`, fc1 halving the width: s = x per token (ChannelSELayer_SA,
  the pixel-adaptive fusion gate) or, with `squeeze`, the spatial mean of x (ChannelSELayer,
  squeeze-excitation with reduction 2, on a [B, H, W, C] map)."""

  def __init__(self, dim, squeeze: bool = False, *, dtype, rngs):
    self.squeeze = squeeze
    self.fc1 = linear(dim, dim // 2, init="trunc", dtype=dtype, rngs=rngs)
    self.fc2 = linear(dim // 2, dim, init="trunc", dtype=dtype, rngs=rngs)

  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True) if self.squeeze else x
    return x * jax.nn.sigmoid(self.fc2(jax.nn.relu(self.fc1(s))))


class LadderBlock(nnx.Module):
  """multi_branch_LadderBlock: 3 branches with progressive shift and ladder values, then fusion."""

  def __init__(self, dim, resolution, num_heads, window_size, dpr, *, dtype, rngs):
    nb = 3
    self.dim_b = dim // nb
    shifts = [(0, 1), (window_size // 2, 1), (window_size // 2, 0)]  # (shift, direction)
    self.blocks = nnx.List([
        LadderSABlock(self.dim_b, resolution, num_heads, window_size, shifts[i][0], shifts[i][1],
                      i > 0, dpr, dtype=dtype, rngs=rngs) for i in range(nb)])
    self.pointconv = linear(self.dim_b * nb, self.dim_b * nb, init="trunc", dtype=dtype, rngs=rngs)
    self.se = ChannelGate(self.dim_b * nb, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    outs, d = [], self.dim_b
    for i, blk in enumerate(self.blocks):
      outs.append(blk(x[..., d * i:d * (i + 1)], outs[-1] if i else None))
    xs = self.se(jnp.concatenate(outs, axis=-1))
    return xs + self.pointconv(xs)


class PatchMerging(nnx.Module):
  """Swin patch merging: 2x2 neighbours concatenated (x00, x10, x01, x11), LN, Linear(4C, 2C)."""

  def __init__(self, dim, *, dtype, rngs):
    self.norm = layer_norm(4 * dim, dtype=dtype, rngs=rngs)
    self.reduction = linear(4 * dim, 2 * dim, init="trunc", use_bias=False, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    return self.reduction(self.norm(x))


class Stage(nnx.Module):
  def __init__(self, dim, resolution, depth, num_heads, window_size, dprs, downsample, *, dtype,
               rngs):
    self.blocks = nnx.List([LadderBlock(dim, resolution, num_heads, window_size, dprs[i],
                                        dtype=dtype, rngs=rngs) for i in range(depth)])
    self.downsample = PatchMerging(dim, dtype=dtype, rngs=rngs) if downsample else None


class MV2BlockSE(nnx.Module):
  """MobileNetV2 inverted residual (expansion 4; conv, GELU, BN order) followed by SE."""

  def __init__(self, cin, cout, stride, expansion=4, *, dtype, rngs):
    hid = cin * expansion
    self.residual = stride == 1 and cin == cout
    self.conv = nnx.Dict({
        "0": conv(cin, hid, 1, use_bias=False, dtype=dtype, rngs=rngs),
        "2": batch_norm(hid, dtype=dtype, rngs=rngs),
        "3": conv(hid, hid, 3, stride, groups=hid, use_bias=False, dtype=dtype, rngs=rngs),
        "5": batch_norm(hid, dtype=dtype, rngs=rngs),
        "6": conv(hid, cout, 1, use_bias=False, dtype=dtype, rngs=rngs),
        "7": batch_norm(cout, dtype=dtype, rngs=rngs)})
    self.se = ChannelGate(cout, squeeze=True, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    c = self.conv
    y = c["2"](gelu(c["0"](x)))
    y = c["5"](gelu(c["3"](y)))
    y = self.se(c["7"](c["6"](y)))
    return x + y if self.residual else y


class Stem(nnx.Module):
  """PatchEmbed_stem_3conv: conv3x3 s2 (-> E/2), conv3x3 (-> E), conv3x3 (-> E); each GELU then BN."""

  def __init__(self, in_channels, embed_dim, *, dtype, rngs):
    chans = (in_channels, embed_dim // 2, embed_dim, embed_dim)
    layers = {}
    for i in range(3):
      layers[str(3 * i)] = conv(chans[i], chans[i + 1], 3, 2 if i == 0 else 1, use_bias=False,
                                dtype=dtype, rngs=rngs)
      layers[str(3 * i + 2)] = batch_norm(chans[i + 1], dtype=dtype, rngs=rngs)
    self.proj = nnx.Dict(layers)

  def __call__(self, x):
    for i in range(3):
      x = self.proj[str(3 * i + 2)](gelu(self.proj[str(3 * i)](x)))
    return x


class PSLT(PooledClassifier):
  """PSLT: stem (stride 2), MV2-SE stages (conv_depths), ladder stages (depths), LN, GAP, Linear.

  img_size fixes the ladder stages' window partition and shift masks (as the official model).
  window_size: attention window and (// 2) the progressive shift. The official code passes its
  per-branch `window_size=[7, 7, 7]` list only into the shift sizes; the window itself is always 7
  (or the whole map when that is smaller), which this single value reproduces.
  num_classes=None returns pooled features; `features(x)` the final map (pre-norm).
  """

  def __init__(self, embed_dim=36, conv_depths=(3, 3), depths=(10, 3), num_heads=(4, 8), *,
               window_size: int = 7, img_size: int = 224, in_channels: int = 3,
               num_classes: int | None = 1000, drop_path: float = 0.2, dtype=jnp.float32,
               remat: bool = False, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)  # accepts "bfloat16" from configs
    self.dtype, self.remat = dtype, remat
    self.patch_embed = Stem(in_channels, embed_dim, dtype=dtype, rngs=rngs)
    layers = []
    for t, depth in enumerate(conv_depths):
      for j in range(depth):
        cin = embed_dim * 2 ** (t if j == 0 else t + 1)
        layers.append(MV2BlockSE(cin, embed_dim * 2 ** (t + 1), 2 if j == 0 else 1,
                                 dtype=dtype, rngs=rngs))
    nc = len(conv_depths)
    layers.append(MV2BlockSE(embed_dim * 2 ** nc, embed_dim * 2 ** (nc + 1), 2, dtype=dtype,
                             rngs=rngs))
    self.conv_layers = nnx.List(layers)
    dpr = np.linspace(0.0, drop_path, sum(depths)).tolist()
    stages = []
    for i, depth in enumerate(depths):
      res = img_size // 2 // 2 ** (i + nc + 1)
      start = sum(depths[:i])
      stages.append(Stage(embed_dim * 2 ** (i + nc + 1), (res, res), depth, num_heads[i],
                          window_size, dpr[start:start + depth], i < len(depths) - 1,
                          dtype=dtype, rngs=rngs))
    self.layers = nnx.List(stages)
    self.num_features = embed_dim * 2 ** (len(depths) + nc)
    self.norm = layer_norm(self.num_features, dtype=dtype, rngs=rngs)
    self.head = (linear(self.num_features, num_classes, init="trunc", dtype=dtype, rngs=rngs)
                 if num_classes else None)

  def features(self, x):
    x = self.patch_embed(x.astype(self.dtype))
    for layer in self.conv_layers:
      x = layer(x)
    return run_stages(self.layers, x, self.remat)


register_variants(PSLT, VARIANTS)

"""Layers shared by the vision backbones (ResNet, ViT, DilateFormer, PSLT).

PyTorch-default initialisers, so a freshly built model matches its official counterpart's
statistics, stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"), the
transformer MLP and token attention (timm names), the stage loop with optional rematerialisation,
the pooled classification head, and the registration of named variants.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def torch_default_kernel_init():
  """`nn.Linear` / `nn.Conv2d` default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int):
  """`nn.Linear` / `nn.Conv2d` default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(max(fan_in, 1))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def trunc_normal_init(std: float = 0.02):
  """timm `trunc_normal_(std=.02)` (truncated at +-2 absolute, i.e. +-100 std for std .02)."""
  def init(key, shape, dtype=jnp.float32):
    lim = 2.0 / std
    return std * jax.random.truncated_normal(key, -lim, lim, shape, dtype)
  return init


def linear(cin: int, cout: int, *, rngs: nnx.Rngs, dtype=None, use_bias: bool = True,
           init: str = "torch") -> nnx.Linear:
  """nn.Linear with PyTorch default init (`init="torch"`) or timm's trunc-normal(.02)/zero-bias."""
  if init == "torch":
    k, b = torch_default_kernel_init(), torch_default_bias_init(cin)
  else:
    k, b = trunc_normal_init(0.02), nnx.initializers.zeros
  return nnx.Linear(cin, cout, use_bias=use_bias, dtype=dtype, kernel_init=k, bias_init=b, rngs=rngs)


def conv(cin: int, cout: int, k: int, stride: int = 1, *, padding: int | None = None,
         groups: int = 1, dilation: int = 1, use_bias: bool = True, dtype=None,
         kernel_init=None, rngs: nnx.Rngs) -> nnx.Conv:
  """nn.Conv2d(cin, cout, k, stride, padding=k//2 by default) in NHWC with explicit (torch) padding."""
  p = k // 2 * dilation if padding is None else padding
  fan_in = cin // groups * k * k
  return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((p, p), (p, p)),
                  kernel_dilation=(dilation, dilation), feature_group_count=groups,
                  use_bias=use_bias, dtype=dtype,
                  kernel_init=kernel_init or torch_default_kernel_init(),
                  bias_init=torch_default_bias_init(fan_in), rngs=rngs)


def batch_norm(c: int, *, dtype=None, eps: float = 1e-5, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """nn.BatchNorm2d(c): torch momentum 0.1 is flax momentum 0.9."""
  return nnx.BatchNorm(c, momentum=0.9, epsilon=eps, dtype=dtype, rngs=rngs)


def layer_norm(c: int, *, eps: float = 1e-5, dtype=None, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(c, epsilon=eps, dtype=dtype, rngs=rngs)


def drop_path(rate: float, ndim: int, *, rngs: nnx.Rngs) -> nnx.Dropout:
  """Stochastic depth per example for `ndim`-dimensional inputs: dropout whose mask is shared by all
  non-batch dimensions, i.e. the whole residual branch of an example is zeroed with probability
  `rate` and kept ones are scaled by 1/(1-rate) (timm `DropPath`). Off in eval mode."""
  return nnx.Dropout(rate, broadcast_dims=tuple(range(1, ndim)), rngs=rngs)


def gelu(x):
  """Exact (erf) GELU, as torch.nn.GELU()."""
  return jax.nn.gelu(x, approximate=False)


class Mlp(nnx.Module):
  """Transformer MLP (timm `Mlp`): fc1 (dim -> hidden), `act` (exact GELU), fc2 (hidden -> dim)."""

  def __init__(self, dim, hidden, *, act=gelu, dtype, rngs):
    self.act = act
    self.fc1 = linear(dim, hidden, init="trunc", dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, dim, init="trunc", dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.fc2(self.act(self.fc1(x)))


class Attention(nnx.Module):
  """Multi-head self-attention over the tokens of [B, N, C] (timm `Attention`: qkv, proj);
  `is_causal`: token i attends to tokens j <= i only (CLIP's text transformer)."""

  def __init__(self, dim, num_heads, *, dtype, rngs):
    self.num_heads = num_heads
    self.qkv = linear(dim, 3 * dim, init="trunc", dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, init="trunc", dtype=dtype, rngs=rngs)

  def __call__(self, x, is_causal: bool = False):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
    out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2],
                                       is_causal=is_causal)
    return self.proj(out.reshape(b, n, c))


def run_block(block, x, remat: bool):
  """`block(x)`, rematerialised in the backward pass when `remat`."""
  return nnx.remat(lambda b, h: b(h))(block, x) if remat else block(x)


def run_stages(stages, x, remat: bool):
  """Each stage's `blocks` in order, then its `downsample` when it has one."""
  for stage in stages:
    for block in stage.blocks:
      x = run_block(block, x, remat)
    if stage.downsample is not None:
      x = stage.downsample(x)
  return x


class PooledClassifier(nnx.Module):
  """`model(x)`: global average pool of `norm(features(x))`, then `head` (the pooled features when
  `head` is None). Subclasses define `features`, `norm` and `head`."""

  def __call__(self, x):
    x = jnp.mean(self.norm(self.features(x)), axis=(1, 2))
    return self.head(x) if self.head is not None else x


def register_variants(cls, variants) -> None:
  """Registers each `name: {constructor argument: value}` of `variants` as the model `name`:
  `models.build(name, **kw)` is `cls(**{**preset, **kw})`."""
  import models

  def variant(name, preset):
    def build(*, rngs: nnx.Rngs, **kw):
      return cls(**{**preset, **kw}, rngs=rngs)
    build.__doc__ = f"{name}: {cls.__name__}({', '.join(f'{k}={v}' for k, v in preset.items())})."
    return build
  for name, preset in variants.items():
    models.register(name, variant(name, dict(preset)))

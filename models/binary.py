"""Binary neural networks with selectable sign estimators, ReSTE first.

Wu et al., "Estimator Meets Equilibrium Perspective: A Rectified Straight Through Estimator for
Binary Neural Networks Training" (ICCV 2023, official code DravenALG/ReSTE).

Forward of every estimator is `sign(x)` with the convention **sign(0) = +1**, so binarised tensors
are strictly in {-1, +1} (torch.sign, used by the official code, returns 0 at 0; the two differ
only on a measure-zero set). The backward is the derivative `g(x)` of a surrogate:

  reste        ReSTE power estimator (paper eq. 7, official `Binarize_ReSTE`), o >= 1, t = 1.5:
               g = (1/o)|x|^((1-o)/o)      for 0.1 < |x| <= t,
               g = 0.1^(1/o) / 0.1         for |x| <= 0.1 (the linear segment near zero),
               g = 0                        for |x| > t.
               o follows the cosine schedule `reste_o` (o = 1: STE clipped at t).
  ste          identity (Bengio et al. 2013).
  clipped_ste  1{|x| <= 1} (Hubara et al. 2016).
  approx_sign  Bi-Real ApproxSign (Liu et al. 2018): 2 - 2|x| for |x| < 1, else 0.
  ede          IR-Net EDE (Qin et al. 2020): k t (1 - tanh^2(t x)),
               t = 0.1 * 10^(p * log10(10 / 0.1)), k = max(1/t, 1), p = training progress.

Binary layers and models take the estimator's parameter itself, `param` (o for reste, t for ede,
unused by the others), so a caller can ask for any o; `estimator_param(estimator, progress, o_end)`
gives the scheduled value at training progress p in [0, 1] (the task computes p, per epoch as the
official code or per step). A model called without `param` uses the end-of-training value (o_end;
the forward is sign(x) whatever the parameter). Binary layers binarise their input activations with
the chosen estimator and use weights `mean|W| * sign(W)` (one scalar per layer, the scale
differentiable as in XNOR-Net). First and last layers stay full precision.

Models (CIFAR layouts, any input size, `width` scales the channel counts):
  bnn_resnet20   Bi-Real/IR-Net style ResNet-20: every binary 3x3 conv has its own shortcut,
                 downsampling shortcut avgpool(2) + full-precision 1x1 conv + BN, hardtanh after adds.
  bnn_resnet18   the same block in the ResNet-18 layout (64-128-256-512, 2 blocks per stage).
  bnn_vgg_small  VGG-small (128-128-256-256-512-512, max-pool after every second conv).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

import models

ESTIMATORS = ("reste", "ste", "clipped_ste", "approx_sign", "ede")
INTERVAL = 0.1  # ReSTE's linear segment |x| <= 0.1 (official `interval`)
EDE_T_MIN, EDE_T_MAX = 0.1, 10.0


def _check(estimator: str):
  if estimator not in ESTIMATORS:
    raise ValueError(f"Unknown estimator {estimator!r}; choose one of {ESTIMATORS}.")


def reste_o(progress, o_end: float = 3.0):
  """ReSTE's schedule: o = 1 + (o_end - 1)(1 - cos(pi/2 * progress)), progress in [0, 1]."""
  return 1.0 + (o_end - 1.0) * (1.0 - jnp.cos(jnp.pi / 2 * progress))


def ede_t(progress):
  """IR-Net's EDE temperature t = T_min * 10^(progress * log10(T_max / T_min))."""
  return EDE_T_MIN * 10.0 ** (progress * math.log10(EDE_T_MAX / EDE_T_MIN))


def estimator_param(estimator: str, progress, o_end: float = 3.0):
  """The scheduled parameter: o for reste, t for ede, 1 otherwise."""
  _check(estimator)
  if estimator == "reste":
    return reste_o(progress, o_end)
  if estimator == "ede":
    return ede_t(progress)
  return jnp.ones_like(jnp.asarray(progress, jnp.float32))


def sign(x):
  """sign with sign(0) = +1."""
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def derivative(estimator: str, x, param, t: float = 1.5):
  """g(x): the backward of `binarize` for `estimator` with scheduled parameter `param`."""
  _check(estimator)
  ax = jnp.abs(x)
  if estimator == "reste":
    o = param
    power = (1.0 / o) * jnp.maximum(ax, INTERVAL) ** ((1.0 - o) / o)
    near = INTERVAL ** (1.0 / o) / INTERVAL
    g = jnp.where(ax <= INTERVAL, near, jnp.where(ax <= t, power, 0.0))
  elif estimator == "ste":
    g = jnp.ones_like(x)
  elif estimator == "clipped_ste":
    g = (ax <= 1.0).astype(x.dtype)
  elif estimator == "approx_sign":
    g = jnp.where(ax < 1.0, 2.0 - 2.0 * ax, 0.0)
  else:  # ede
    k = jnp.maximum(1.0 / param, 1.0)
    g = k * param / jnp.cosh(param * x) ** 2  # = k t (1 - tanh^2(t x)), without cancellation
  return g.astype(x.dtype)


def surrogate(estimator: str, x, param, t: float = 1.5):
  """The forward function the backward differentiates (used by the estimating-error indicator).

  reste: sign(x)|x|^(1/o) (the paper's power function, as in the indicator of the notes);
  ste: x; clipped_ste: clip(x, -1, 1); approx_sign: the Bi-Real polynomial; ede: k tanh(t x).
  """
  del t
  _check(estimator)
  if estimator == "reste":
    return sign(x) * jnp.abs(x) ** (1.0 / param)
  if estimator == "ste":
    return x
  if estimator == "clipped_ste":
    return jnp.clip(x, -1.0, 1.0)
  if estimator == "approx_sign":
    poly = jnp.where(x < 0, 2 * x + x * x, 2 * x - x * x)
    return jnp.where(jnp.abs(x) < 1.0, poly, sign(x))
  k = jnp.maximum(1.0 / param, 1.0)
  return k * jnp.tanh(param * x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def binarize(estimator: str, x, param, t: float = 1.5):
  """sign(x) forward (sign(0) = +1); backward `derivative(estimator, x, param, t)`."""
  return sign(x)


def _binarize_fwd(estimator, x, param, t):
  return sign(x), (x, param)


def _binarize_bwd(estimator, t, res, g):
  x, param = res
  return g * derivative(estimator, x, param, t), jnp.zeros_like(param)


binarize.defvjp(_binarize_fwd, _binarize_bwd)


class BinaryConv(nnx.Module):
  """3x3 (or kxk) conv on binarised activations with weights mean|W| * sign(W) (NHWC, HWIO)."""

  def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, *, estimator: str,
               o_end: float, t: float, rngs: nnx.Rngs):
    _check(estimator)
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
    self.kernel = nnx.Param(init(rngs.params(), (k, k, cin, cout), jnp.float32))
    self.stride, self.pad = stride, k // 2
    self.estimator, self.o_end, self.t = estimator, o_end, t

  def binary_weight(self, param):
    """`mean|W| * sign(W)`, the sign's backward at the estimator parameter `param` (o or t)."""
    w = self.kernel[...]
    return jnp.mean(jnp.abs(w)) * binarize(self.estimator, w, jnp.asarray(param, jnp.float32),
                                           self.t)

  def __call__(self, x, param):
    """Binary conv of binarised `x`; `param`: the estimator's o (reste) or t (ede)."""
    xb = binarize(self.estimator, x, jnp.asarray(param, jnp.float32), self.t)
    return jax.lax.conv_general_dilated(
        xb, self.binary_weight(param), (self.stride, self.stride),
        ((self.pad, self.pad), (self.pad, self.pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class BinaryDense(nnx.Module):
  """Dense layer on binarised inputs with weights mean|W| * sign(W) (for binary MLP heads)."""

  def __init__(self, cin: int, cout: int, *, estimator: str, o_end: float, t: float,
               rngs: nnx.Rngs):
    _check(estimator)
    init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
    self.kernel = nnx.Param(init(rngs.params(), (cin, cout), jnp.float32))
    self.estimator, self.o_end, self.t = estimator, o_end, t

  binary_weight = BinaryConv.binary_weight

  def __call__(self, x, param):
    xb = binarize(self.estimator, x, jnp.asarray(param, jnp.float32), self.t)
    return xb @ self.binary_weight(param)


def _conv_fp(cin, cout, k, stride, rngs):
  return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((k // 2,) * 2,) * 2, use_bias=False,
                  kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
                  rngs=rngs)


def _bn(c, rngs):
  return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)


class Downsample(nnx.Module):
  """Bi-Real shortcut: avgpool(stride) then full-precision 1x1 conv + BN."""

  def __init__(self, cin, cout, stride, rngs):
    self.stride = stride
    self.conv = _conv_fp(cin, cout, 1, 1, rngs)
    self.bn = _bn(cout, rngs)

  def __call__(self, x):
    if self.stride > 1:
      s = self.stride
      x = nnx.avg_pool(x, (s, s), (s, s), padding="SAME")
    return self.bn(self.conv(x))


class BiRealBlock(nnx.Module):
  """Two binary 3x3 convs, each with its own shortcut: x <- hardtanh(BN(BinConv(x)) + shortcut(x))."""

  def __init__(self, cin, cout, stride, *, rngs, **bkw):
    self.conv1 = BinaryConv(cin, cout, 3, stride, rngs=rngs, **bkw)
    self.bn1 = _bn(cout, rngs)
    self.down = Downsample(cin, cout, stride, rngs) if (stride != 1 or cin != cout) else None
    self.conv2 = BinaryConv(cout, cout, 3, 1, rngs=rngs, **bkw)
    self.bn2 = _bn(cout, rngs)

  def __call__(self, x, param):
    short = x if self.down is None else self.down(x)
    x = nnx.hard_tanh(self.bn1(self.conv1(x, param)) + short)
    return nnx.hard_tanh(self.bn2(self.conv2(x, param)) + x)


class BiRealResNet(nnx.Module):
  """Full-precision stem conv + BN, binary Bi-Real blocks, global mean, full-precision classifier."""

  def __init__(self, *, stages, blocks, num_classes=10, in_channels=3, estimator="reste",
               o_end=3.0, t=1.5, rngs: nnx.Rngs):
    bkw = dict(estimator=estimator, o_end=o_end, t=t)
    self.estimator, self.o_end = estimator, o_end
    self.stem = _conv_fp(in_channels, stages[0], 3, 1, rngs)
    self.bn = _bn(stages[0], rngs)
    layers, cin = [], stages[0]
    for i, (c, n) in enumerate(zip(stages, blocks)):
      for j in range(n):
        layers.append(BiRealBlock(cin, c, 2 if (i > 0 and j == 0) else 1, rngs=rngs, **bkw))
        cin = c
    self.blocks = nnx.List(layers)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def final_param(self):
    """The estimator parameter at the end of training (o_end for reste)."""
    return estimator_param(self.estimator, 1.0, self.o_end)

  def __call__(self, x, param=None):
    param = self.final_param() if param is None else param
    x = nnx.hard_tanh(self.bn(self.stem(x)))
    for block in self.blocks:
      x = block(x, param)
    return self.head(jnp.mean(x, axis=(1, 2)))


class VGGSmall(nnx.Module):
  """VGG-small: FP conv(w) - [bin conv(w), pool] - bin conv(2w) - [bin conv(2w), pool] -
  bin conv(4w) - [bin conv(4w), pool] - FP linear; BN + hardtanh after every conv."""

  def __init__(self, *, width=128, num_classes=10, in_channels=3, image_size=32,
               estimator="reste", o_end=3.0, t=1.5, rngs: nnx.Rngs):
    bkw = dict(estimator=estimator, o_end=o_end, t=t)
    self.estimator, self.o_end = estimator, o_end
    chans = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    self.conv0 = _conv_fp(in_channels, width, 3, 1, rngs)
    self.convs = nnx.List([BinaryConv(a, b, 3, 1, rngs=rngs, **bkw)
                           for a, b in zip(chans[:-1], chans[1:])])
    self.bns = nnx.List([_bn(c, rngs) for c in chans])
    side = image_size
    for _ in range(3):
      side = -(-side // 2)
    self.head = nnx.Linear(4 * width * side * side, num_classes, rngs=rngs)

  final_param = BiRealResNet.final_param

  def __call__(self, x, param=None):
    param = self.final_param() if param is None else param
    x = nnx.hard_tanh(self.bns[0](self.conv0(x)))
    for i, conv in enumerate(self.convs):
      x = conv(x, param)
      if i % 2 == 0:  # after the 1st, 3rd and 5th binary conv (2nd, 4th, 6th conv overall)
        x = nnx.max_pool(x, (2, 2), (2, 2), padding="SAME")
      x = nnx.hard_tanh(self.bns[i + 1](x))
    return self.head(x.reshape(x.shape[0], -1))


@models.register("bnn_resnet20")
def bnn_resnet20(*, width: int = 16, rngs: nnx.Rngs, **kw) -> BiRealResNet:
  return BiRealResNet(stages=(width, 2 * width, 4 * width), blocks=(3, 3, 3), rngs=rngs, **kw)


@models.register("bnn_resnet18")
def bnn_resnet18(*, width: int = 64, rngs: nnx.Rngs, **kw) -> BiRealResNet:
  return BiRealResNet(stages=(width, 2 * width, 4 * width, 8 * width), blocks=(2, 2, 2, 2),
                      rngs=rngs, **kw)


models.register("bnn_vgg_small", VGGSmall)


def binary_layers(model: nnx.Module) -> dict[tuple, BinaryConv | BinaryDense]:
  """path -> module for every binary layer of `model` (paths as in the parameter tree)."""
  return {tuple(p): m for p, m in nnx.iter_graph(model)
          if isinstance(m, (BinaryConv, BinaryDense))}


def estimating_error(model: nnx.Module, param=None) -> jax.Array:
  """Indicator 1: sum over binary layers of || surrogate(w) - sign(w) ||_2 (weights only), at the
  estimator parameter `param`; None: each layer's end-of-training value, o_end, as the official
  `get_fitting_error(model, args.o_end)` (DravenALG/ReSTE utils/tools.py)."""
  total = jnp.zeros([])
  for m in binary_layers(model).values():
    w = m.kernel[...]
    p = estimator_param(m.estimator, 1.0, m.o_end) if param is None else param
    total = total + jnp.linalg.norm((surrogate(m.estimator, w, p, m.t) - sign(w)).ravel())
  return total


def gradient_stability(kernel_grads) -> jax.Array:
  """Indicator 2: sum over binary layers of Var(|dL/dw|), the unbiased variance (n - 1, torch.var as
  the official `get_stability_var`); lower is more stable."""
  return sum(jnp.var(jnp.abs(g), ddof=1) for g in kernel_grads)

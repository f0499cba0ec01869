"""Wide ResNet for 32x32 images (Zagoruyko & Komodakis 2016, "Wide Residual Networks", Table 1), in
the layout of FixMatch / FreeMatch / DSA (kekmodel/FixMatch-pytorch `models/wideresnet.py`,
Qi2019KB/DSA `models/classification/wideresnet_acbe.py`).

WRN-d-k: a 3x3 conv to 16 channels, three groups of n = (d - 4) / 6 pre-activation basic blocks
with 16k, 32k, 64k channels (strides 1, 2, 2), then BN, LeakyReLU(0.1), global average pool and a
linear head. Every BatchNorm uses PyTorch momentum 0.001 (flax momentum 0.999), every activation is
LeakyReLU(0.1); convolutions are kaiming-normal (fan_out), the head xavier-normal with zero bias.
In a block, BN-act is applied before the first conv; where the channel count changes the shortcut
is a 1x1 conv of the raw input, except in the first group (`activate_before_residual`), where both
paths take the activated input (the official block computes and discards BN-act otherwise; that
unused BN is not built here). Inputs are NHWC.

`model(x)` gives logits; with `num_classes=None` the model is a trunk: `model.features(x)` is the
last group's output [B, H/4, W/4, 64k] before the final BN, and neither the final BN nor the head
is built (DSA puts its own shared BN and heads there).

    models.build("wrn28_2", num_classes=10)    # CIFAR-10 (1.5M parameters)
    models.build("wrn28_8", num_classes=100)   # CIFAR-100 (23.4M parameters)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models._vision_layers import register_variants

_KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
_XAVIER_NORMAL = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")
SLOPE = 0.1  # LeakyReLU negative slope of every activation


def leaky_relu(x):
  return jax.nn.leaky_relu(x, SLOPE)


def batch_norm(c: int, momentum: float = 0.999, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """nn.BatchNorm2d(c, momentum=0.001): running <- 0.999 running + 0.001 batch (flax convention:
  `momentum` is the weight of the old running value)."""
  return nnx.BatchNorm(c, momentum=momentum, epsilon=1e-5, rngs=rngs)


def _conv(cin, cout, k, stride, rngs):
  p = k // 2
  return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((p, p), (p, p)), use_bias=False,
                  kernel_init=_KAIMING_FAN_OUT, rngs=rngs)


class Block(nnx.Module):
  """Pre-activation basic block: [BN-act] conv3x3 (stride) - BN-act - conv3x3, plus the shortcut."""

  def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool,
               bn_momentum: float, *, rngs: nnx.Rngs):
    self.equal = cin == cout
    self.activate_shortcut = activate_before_residual and not self.equal
    self.bn1 = (batch_norm(cin, bn_momentum, rngs=rngs) if self.equal or self.activate_shortcut
                else None)
    self.conv1 = _conv(cin, cout, 3, stride, rngs)
    self.bn2 = batch_norm(cout, bn_momentum, rngs=rngs)
    self.conv2 = _conv(cout, cout, 3, 1, rngs)
    self.shortcut = None if self.equal else _conv(cin, cout, 1, stride, rngs)

  def __call__(self, x):
    if self.bn1 is not None:
      h = leaky_relu(self.bn1(x))
      if self.activate_shortcut:
        x = h
    else:
      h = x
    out = self.conv2(leaky_relu(self.bn2(self.conv1(h))))
    return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nnx.Module):
  """WRN-depth-widen_factor (see the module docstring). `bn_momentum`: flax convention (0.999 is
  PyTorch's 0.001, the official value; short runs need a faster average, e.g. 0.9)."""

  def __init__(self, *, depth: int = 28, widen_factor: int = 2, num_classes: int | None = 10,
               in_channels: int = 3, bn_momentum: float = 0.999, rngs: nnx.Rngs):
    if (depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}.")
    n = (depth - 4) // 6
    channels = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    self.conv1 = _conv(in_channels, channels[0], 3, 1, rngs)
    groups = []
    for g, stride in enumerate((1, 2, 2)):
      cin, cout = channels[g], channels[g + 1]
      groups.append(nnx.List([
          Block(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                activate_before_residual=(g == 0), bn_momentum=bn_momentum, rngs=rngs)
          for i in range(n)]))
    self.groups = nnx.List(groups)
    self.num_features = channels[3]
    if num_classes:
      self.bn = batch_norm(channels[3], bn_momentum, rngs=rngs)
      self.fc = nnx.Linear(channels[3], num_classes, kernel_init=_XAVIER_NORMAL,
                           bias_init=nnx.initializers.zeros, rngs=rngs)
    else:
      self.bn = self.fc = None

  def features(self, x):
    """The last group's output [B, H/4, W/4, 64k], before the final BN."""
    x = self.conv1(x)
    for group in self.groups:
      for block in group:
        x = block(x)
    return x

  def __call__(self, x):
    x = jnp.mean(leaky_relu(self.bn(self.features(x))), axis=(1, 2))
    return self.fc(x)


register_variants(WideResNet, {"wide_resnet": {}, "wrn28_2": dict(depth=28, widen_factor=2),
                               "wrn28_8": dict(depth=28, widen_factor=8)})

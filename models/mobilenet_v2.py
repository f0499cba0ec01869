"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018)
in torchvision's layout (``torchvision.models.mobilenet_v2``), so its ImageNet weights load by name
(converter `torchvision_mobilenet_v2`; `torchvision_mobilenet_v2_backbone` inside `acl_net`).

    features.0        conv 3x3 stride 2 (3 -> c0) - BN - ReLU6
    features.1 .. 17  inverted residuals (t, c, n, s) of Table 2: 1x1 expand (t > 1) - BN - ReLU6,
                      3x3 depthwise stride s - BN - ReLU6, 1x1 project - BN (linear bottleneck);
                      identity shortcut when stride 1 and in == out
    features.18       conv 1x1 (320 w -> 1280 max(1, w)) - BN - ReLU6
    global mean pool; classifier = Dropout(0.2), Linear (absent when num_classes is None)
Channels are ``make_divisible(c * width_mult, round_nearest)`` as torchvision; 3x3 convolutions
pad 1 on every side (as PyTorch, also at stride 2); BN eps 1e-5, momentum 0.1 (PyTorch's).

Staged view (the ACL backbone interface of `models.acl`): `stage_starts` split `features` into a
stem (before the first start) and stages; ACL's official MobileNetV2 config hooks its adapters
before ``features.3, .5, .12, .15`` (GiantJun/CL_Pytorch, options/multi_steps/acl/skin8.yaml), the
default.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models

# (expansion t, channels c, repeats n, first stride s) of the paper's Table 2 / torchvision.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int) -> int:
  """torchvision's ``_make_divisible``: nearest multiple of `divisor`, at least `divisor`, never
  below 90 % of `v`."""
  new = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * v else new


def _batch_norm(c, rngs):
  return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)


def conv_bn(cin: int, cout: int, kernel: int, rngs: nnx.Rngs, stride: int = 1,
            groups: int = 1) -> nnx.List:
  """torchvision ``Conv2dNormActivation``: [conv (no bias), BN]; ReLU6 is applied by the caller."""
  pad = (kernel - 1) // 2
  return nnx.List([nnx.Conv(cin, cout, (kernel, kernel), strides=stride,
                            padding=((pad, pad), (pad, pad)), feature_group_count=groups,
                            use_bias=False, rngs=rngs), _batch_norm(cout, rngs)])


def conv_bn_relu6(block: nnx.List, x: jax.Array) -> jax.Array:
  return jnp.clip(block[1](block[0](x)), 0.0, 6.0)


class InvertedResidual(nnx.Module):
  """``conv`` = [expand conv_bn (t > 1)], depthwise conv_bn, project conv, BN."""

  def __init__(self, cin: int, cout: int, stride: int, expand: int, *, rngs: nnx.Rngs):
    hidden = int(round(cin * expand))
    layers = [conv_bn(cin, hidden, 1, rngs)] if expand != 1 else []
    layers += [conv_bn(hidden, hidden, 3, rngs, stride=stride, groups=hidden),
               nnx.Conv(hidden, cout, (1, 1), use_bias=False, rngs=rngs), _batch_norm(cout, rngs)]
    self.conv = nnx.List(layers)
    self.residual = stride == 1 and cin == cout

  def __call__(self, x):
    out = x
    for block in list(self.conv)[:-2]:
      out = conv_bn_relu6(block, out)
    out = self.conv[-1](self.conv[-2](out))
    return x + out if self.residual else out


class MobileNetV2(nnx.Module):
  """torchvision's MobileNetV2 (module docstring); `model(x)` gives logits, or pooled features
  when `num_classes` is None."""

  def __init__(self, *, num_classes: int | None = 1000, width_mult: float = 1.0,
               round_nearest: int = 8, dropout: float = 0.2, in_channels: int = 3,
               stage_starts: Sequence[int] = (3, 5, 12, 15), rngs: nnx.Rngs):
    cin = make_divisible(32 * width_mult, round_nearest)
    last = make_divisible(1280 * max(1.0, width_mult), round_nearest)
    features, channels = [conv_bn(in_channels, cin, 3, rngs, stride=2)], [in_channels]
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
      cout = make_divisible(c * width_mult, round_nearest)
      for i in range(n):
        channels.append(cin)
        features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, rngs=rngs))
        cin = cout
    channels.append(cin)
    features.append(conv_bn(cin, last, 1, rngs))
    self.features = nnx.List(features)
    self.classifier = (nnx.List([nnx.Dropout(dropout, rngs=rngs), nnx.Linear(last, num_classes,
                                                                              rngs=rngs)])
                       if num_classes else None)
    self.num_features = last
    starts = tuple(int(s) for s in stage_starts)
    if not starts or list(starts) != sorted(set(starts)) or not 0 < starts[0] <= starts[-1] < len(
        features):
      raise ValueError(f"stage_starts must increase within 1..{len(features) - 1}, got {starts}.")
    self.bounds = starts + (len(features),)
    self.stage_inputs = tuple(channels[s] for s in starts)  # channels entering features[s]

  def _run(self, x, lo: int, hi: int):
    for i in range(lo, hi):
      layer = self.features[i]
      x = layer(x) if isinstance(layer, InvertedResidual) else conv_bn_relu6(layer, x)
    return x

  # --- staged view (models.acl) ---------------------------------------------------------------
  @property
  def num_stages(self) -> int:
    return len(self.bounds) - 1

  def stem(self, x):
    return self._run(x, 0, self.bounds[0])

  def stage(self, i: int, x):
    return self._run(x, self.bounds[i], self.bounds[i + 1])

  # --- whole network --------------------------------------------------------------------------
  def pooled(self, x):
    return jnp.mean(self._run(x, 0, len(self.features)), axis=(1, 2))

  def __call__(self, x):
    feats = self.pooled(x)
    if self.classifier is None:
      return feats
    return self.classifier[1](self.classifier[0](feats))


models.register("mobilenet_v2", MobileNetV2)

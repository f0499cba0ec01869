"""ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1).

torchvision layout and initialisation, so torchvision/timm state dicts convert one to one
(`models.convert`): parameter paths are torchvision's with '/' for '.', except that a block's
`downsample.0`/`downsample.1` are `downsample_conv`/`downsample_bn`. ResNet-50 is v1.5 (the stride
sits on the 3x3 conv of the bottleneck, as torchvision and timm). Inputs are NHWC.

`model(x)` gives logits (or pooled features when `num_classes=None`); `model.features(x)` gives the
final feature map [B, H/32, W/32, C] before pooling, for encoders built on top;
`model.stage_features(x)` the four stages' outputs (segmentation decoders).

`activation`: "relu" (the paper's) or "gelu" (exact, erf form: torch nn.GELU(), the ResNet-18 of AMSS,
njustkmg/TPAMI-AMSS AMSS/backbone.py, in the stem and every block).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import batch_norm, conv, linear

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
_KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}

VARIANTS = {  # name: (block, blocks per stage)
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _conv(cin, cout, k, stride, *, dtype, rngs):
  return conv(cin, cout, k, stride, use_bias=False, dtype=dtype, kernel_init=_KAIMING_FAN_OUT,
              rngs=rngs)


class BasicBlock(nnx.Module):
  """Two 3x3 convs with identity (or 1x1-conv) shortcut; expansion 1."""
  expansion = 1

  def __init__(self, cin, planes, stride, *, dtype, rngs, activation: str = "relu"):
    self.activation = activation
    self.conv1 = _conv(cin, planes, 3, stride, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(planes, planes, 3, 1, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.has_downsample = stride != 1 or cin != planes
    if self.has_downsample:
      self.downsample_conv = _conv(cin, planes, 1, stride, dtype=dtype, rngs=rngs)
      self.downsample_bn = batch_norm(planes, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    act = ACTIVATIONS[self.activation]
    y = act(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    s = self.downsample_bn(self.downsample_conv(x)) if self.has_downsample else x
    return act(y + s)


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand (x4), with projection shortcut where shapes change."""
  expansion = 4

  def __init__(self, cin, planes, stride, *, dtype, rngs, activation: str = "relu"):
    self.activation = activation
    cout = planes * self.expansion
    self.conv1 = _conv(cin, planes, 1, 1, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(planes, planes, 3, stride, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv3 = _conv(planes, cout, 1, 1, dtype=dtype, rngs=rngs)
    self.bn3 = batch_norm(cout, dtype=dtype, rngs=rngs)
    self.has_downsample = stride != 1 or cin != cout
    if self.has_downsample:
      self.downsample_conv = _conv(cin, cout, 1, stride, dtype=dtype, rngs=rngs)
      self.downsample_bn = batch_norm(cout, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    act = ACTIVATIONS[self.activation]
    y = act(self.bn1(self.conv1(x)))
    y = act(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    s = self.downsample_bn(self.downsample_conv(x)) if self.has_downsample else x
    return act(y + s)


def max_pool_3x3_s2(x):
  """nn.MaxPool2d(3, 2, padding=1): padding never wins the max."""
  return nnx.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ResNet(nnx.Module):
  """ResNet: 7x7/2 stem conv, 3x3/2 max-pool, four stages of `depths` blocks, global average pool.

  width: channels of the first stage (64 in the paper); stage i has width * 2^i planes.
  dtype: compute dtype (parameters stay float32).
  remat: rematerialise each block's activations in the backward pass.
  activation: "relu" or "gelu" (see the module docstring).
  """

  def __init__(self, block: str, depths, *, in_channels: int = 3, num_classes: int | None = 1000,
               width: int = 64, dtype=jnp.float32, remat: bool = False, activation: str = "relu",
               rngs: nnx.Rngs):
    block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
    if activation not in ACTIVATIONS:
      raise ValueError(f"activation {activation!r} not in {sorted(ACTIVATIONS)}")
    self.activation = activation
    dtype = jnp.dtype(dtype)  # accepts "bfloat16" from configs
    self.dtype = dtype
    self.remat = remat
    self.conv1 = _conv(in_channels, width, 7, 2, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(width, dtype=dtype, rngs=rngs)
    cin = width
    self.stage_channels = tuple(width * 2 ** i * block_cls.expansion for i in range(len(depths)))
    for i, n in enumerate(depths):
      planes = width * 2 ** i
      blocks = []
      for j in range(n):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block_cls(cin, planes, stride, dtype=dtype, rngs=rngs,
                                activation=activation))
        cin = planes * block_cls.expansion
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.num_features = cin
    self.fc = linear(cin, num_classes, dtype=dtype, rngs=rngs) if num_classes else None

  def stage_features(self, x) -> list:
    """The output of each of the four stages, [B, H/4, W/4, C1] ... [B, H/32, W/32, C4] (for
    dense-prediction heads)."""
    x = ACTIVATIONS[self.activation](self.bn1(self.conv1(x.astype(self.dtype))))
    x = max_pool_3x3_s2(x)
    out = []
    for i in range(4):
      for blk in getattr(self, f"layer{i + 1}"):
        x = nnx.remat(lambda b, h: b(h))(blk, x) if self.remat else blk(x)
      out.append(x)
    return out

  def features(self, x):
    """Final feature map [B, H/32, W/32, C] before pooling."""
    return self.stage_features(x)[-1]

  def __call__(self, x):
    x = jnp.mean(self.features(x), axis=(1, 2))
    return self.fc(x) if self.fc is not None else x


def _factory(name):
  block, depths = VARIANTS[name]

  def build(*, rngs: nnx.Rngs, **kw) -> ResNet:
    return ResNet(block, depths, rngs=rngs, **kw)
  build.__doc__ = f"{name}: ResNet with {block} blocks {depths}."
  return build


for _name in VARIANTS:
  models.register(_name, _factory(_name))

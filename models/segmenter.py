"""Encoder-decoder semantic segmenter: a registered backbone's stage features and a light decoder.

Decoder: the all-MLP head of SegFormer (Xie et al., NeurIPS 2021, "SegFormer: Simple and Efficient
Design for Semantic Segmentation with Transformers", Sec. 3.2, Eq. 1; mmseg `SegformerHead`): each
used stage i is projected by a 1x1 conv to `channels`, bilinearly resized to the first used stage's
resolution, the projections are concatenated (deepest first, as mmseg) and fused by a 1x1 conv with
BatchNorm and ReLU, then dropout and a 1x1 classifier:

    F_i = Up(Linear_i(X_i)),   F = ReLU(BN(Linear([F_k; ...; F_1]))),   logits = Linear(Dropout(F))

The output logits `[B, H/s, W/s, K]` are at the resolution of the first used stage (s = 4 for
ResNet stage 1); tasks resize them to the label size (bilinear), as mmseg's decode-head loss does.
The backbone is any registered model with `stage_features(x) -> [X_1, ..., X_4]` and
`stage_channels` (the ResNets), built with `num_classes=None`; its parameters live under
`backbone/`. ImageNet weights of a torchvision / timm ResNet load into it with the converter
`torchvision_resnet_segmenter` (`init_from.skip = "^head/"` for the new decoder).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import convert
from models._vision_layers import batch_norm, conv


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
  """`[B, h, w, C] -> [B, height, width, C]`, half-pixel centres (`align_corners=False`), no
  antialiasing (torch `F.interpolate(mode="bilinear")`)."""
  if x.shape[1:3] == (height, width):
    return x
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "bilinear",
                          antialias=False)


class AllMLPHead(nnx.Module):
  """SegFormer's decode head (module docstring) over stages with `in_channels`."""

  def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 256,
               dropout: float = 0.1, dtype=jnp.float32, rngs: nnx.Rngs):
    self.proj = nnx.List([conv(c, channels, 1, dtype=dtype, rngs=rngs) for c in in_channels])
    self.fuse = conv(channels * len(in_channels), channels, 1, use_bias=False, dtype=dtype,
                     rngs=rngs)
    self.fuse_bn = batch_norm(channels, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.cls = conv(channels, num_classes, 1, dtype=dtype, rngs=rngs)

  def __call__(self, feats: Sequence[jax.Array]) -> jax.Array:
    h, w = feats[0].shape[1:3]
    up = [resize_bilinear(p(f), h, w) for p, f in zip(self.proj, feats)]
    x = jax.nn.relu(self.fuse_bn(self.fuse(jnp.concatenate(up[::-1], axis=-1))))
    return self.cls(self.dropout(x))


class Segmenter(nnx.Module):
  """`backbone` (a model spec `{name, **kw}`) + `AllMLPHead` on the stages `in_index`."""

  def __init__(self, *, backbone: Mapping[str, Any], num_classes: int,
               in_index: Sequence[int] = (0, 1, 2, 3), channels: int = 256,
               dropout: float = 0.1, dtype=jnp.float32, rngs: nnx.Rngs):
    spec = dict(backbone.to_dict() if hasattr(backbone, "to_dict") else backbone)
    self.backbone = models.build({**spec, "num_classes": None, "dtype": dtype}, rngs=rngs)
    self.in_index = tuple(in_index)
    dims = self.backbone.stage_channels
    self.head = AllMLPHead([dims[i] for i in self.in_index], num_classes, channels=channels,
                           dropout=dropout, dtype=dtype, rngs=rngs)
    self.num_classes = num_classes

  def __call__(self, x: jax.Array) -> jax.Array:
    feats = self.backbone.stage_features(x)
    return self.head([feats[i] for i in self.in_index]).astype(jnp.float32)


models.register("segmenter", Segmenter)


@convert.register("torchvision_resnet_segmenter")
class TorchVisionBackbone(convert.TorchResNet):
  """torchvision / timm ResNet weights into the segmenter's `backbone/` (the file's `fc` unused)."""
  ignore = re.compile(r"num_batches_tracked$|^fc\.")

  def keys(self, path):
    return super().keys(path.removeprefix("backbone/"))

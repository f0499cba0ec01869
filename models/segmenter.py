"""Encoder-decoder semantic segmenter: a registered backbone's stage features and a light decoder.

Decoder: the all-MLP head of SegFormer (Xie et al., NeurIPS 2021, "SegFormer: Simple and Efficient
Design for Semantic Segmentation with Transformers", Sec. 3.2, Eq. 1; mmseg `SegformerHead`): each
used stage i is projected by a 1x1 conv to `channels`, bilinearly resized to the first used stage's
resolution, the projections are concatenated (deepest first, as mmseg) and fused by a 1x1 conv with
BatchNorm and ReLU, then dropout and a 1x1 classifier:

    F_i = Up(Linear_i(X_i)),   F = ReLU(BN(Linear([F_k; ...; F_1]))),   logits = Linear(Dropout(F))

Or (`head="ham"`) SegNeXt's LightHamHead, the decoder of AUCSeg's SegNeXt models: a matrix
decomposition (NMF) "Hamburger" between 1x1 convs (`LightHamHead`).

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


class ConvModule(nnx.Module):
  """mmcv `ConvModule` with a 1x1 conv: conv (bias only without a norm), GroupNorm `gn`
  (`num_groups`, None for no norm), ReLU if `act`."""

  def __init__(self, cin: int, cout: int, *, num_groups: int | None, act: bool, dtype,
               rngs: nnx.Rngs):
    self.conv = conv(cin, cout, 1, use_bias=num_groups is None, dtype=dtype, rngs=rngs)
    self.gn = (nnx.GroupNorm(cout, num_groups=num_groups, epsilon=1e-5, dtype=dtype, rngs=rngs)
               if num_groups else None)
    self.act = act

  def __call__(self, x):
    x = self.conv(x)
    x = self.gn(x) if self.gn is not None else x
    return jax.nn.relu(x) if self.act else x


def nmf2d(x: jax.Array, bases: jax.Array, steps: int) -> jax.Array:
  """Low-rank reconstruction of non-negative `x [B, N, D]` (N pixels, D channels) by NMF with
  multiplicative updates from `bases [B, D, R]` (Geng et al., ICLR 2021, "Is Attention Better Than
  Matrix Decomposition?", Alg. 2 / Eq. 5; mmseg `NMF2D`): coefficients C = softmax(X B) over R,
  then `steps` times C <- C * (X B) / (C B^T B + 1e-6), B <- B * (X^T C) / (B C^T C + 1e-6), a
  last coefficient update, and the reconstruction C B^T [B, N, D]."""
  def update_coef(coef, bases):
    return coef * (x @ bases) / (coef @ (jnp.swapaxes(bases, 1, 2) @ bases) + 1e-6)
  coef = jax.nn.softmax(x @ bases, axis=-1)
  for _ in range(steps):
    coef = update_coef(coef, bases)
    bases = bases * (jnp.swapaxes(x, 1, 2) @ coef) / (
        bases @ (jnp.swapaxes(coef, 1, 2) @ coef) + 1e-6)
  coef = update_coef(coef, bases)
  return coef @ jnp.swapaxes(bases, 1, 2)


class Hamburger(nnx.Module):
  """"Ham" between two "breads" (mmseg `Hamburger`): relu(x + ham_out(NMF(relu(ham_in(x))))).
  The NMF's initial bases are drawn per call, uniform in [0, 1) and L2-normalised over channels
  (the code's `rand_init=True`), from the model's `dropout` stream (fixed for a jitted
  evaluation); `deterministic` (set by `model.eval()`) picks `eval_steps` instead of
  `train_steps` updates."""

  def __init__(self, channels: int, *, rank: int, train_steps: int, eval_steps: int,
               num_groups: int, dtype, rngs: nnx.Rngs):
    self.ham_in = ConvModule(channels, channels, num_groups=None, act=False, dtype=dtype,
                             rngs=rngs)
    self.ham_out = ConvModule(channels, channels, num_groups=num_groups, act=False, dtype=dtype,
                              rngs=rngs)
    self.rank, self.train_steps, self.eval_steps = rank, train_steps, eval_steps
    self.deterministic = False
    self.rngs = rngs["dropout"].fork()

  def __call__(self, x, bases: jax.Array | None = None):
    """`bases [B, C, rank]`: the initial bases instead of random ones."""
    b, h, w, c = x.shape
    e = jax.nn.relu(self.ham_in(x))
    if bases is None:
      bases = jax.random.uniform(self.rngs(), (b, c, self.rank), jnp.float32)
      bases = bases / jnp.maximum(jnp.linalg.norm(bases, axis=1, keepdims=True), 1e-12)
    steps = self.eval_steps if self.deterministic else self.train_steps
    e = nmf2d(e.reshape(b, h * w, c).astype(jnp.float32), bases, steps).reshape(b, h, w, c)
    return jax.nn.relu(x + self.ham_out(e.astype(x.dtype)))


class LightHamHead(nnx.Module):
  """SegNeXt's decode head (Guo et al., NeurIPS 2022, arXiv 2209.08575, Sec. 3.3; mmseg
  `LightHamHead`): the used stages bilinearly resized to the first one's resolution and
  concatenated (shallowest first), a 1x1 conv + GroupNorm + ReLU `squeeze` to `ham_channels`, the
  `Hamburger`, a 1x1 conv + GroupNorm + ReLU `align` to `channels`, channel dropout (Dropout2d) and
  a 1x1 classifier `conv_seg`. Module names follow mmseg's state dict. Defaults: SegNeXt's configs
  (NMF rank 16, 6 / 7 steps, GroupNorm 32 groups; ham_channels = channels = 256 for MSCAN-T/S,
  1024 for MSCAN-L)."""

  def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 256,
               ham_channels: int = 256, rank: int = 16, train_steps: int = 6,
               eval_steps: int = 7, num_groups: int = 32, dropout: float = 0.1,
               dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(num_groups=num_groups, dtype=dtype, rngs=rngs)
    self.squeeze = ConvModule(sum(in_channels), ham_channels, act=True, **kw)
    self.hamburger = Hamburger(ham_channels, rank=rank, train_steps=train_steps,
                               eval_steps=eval_steps, **kw)
    self.align = ConvModule(ham_channels, channels, act=True, **kw)
    self.dropout = nnx.Dropout(dropout, broadcast_dims=(1, 2), rngs=rngs)
    self.conv_seg = conv(channels, num_classes, 1, dtype=dtype, rngs=rngs)

  def __call__(self, feats: Sequence[jax.Array], bases: jax.Array | None = None) -> jax.Array:
    h, w = feats[0].shape[1:3]
    x = self.squeeze(jnp.concatenate([resize_bilinear(f, h, w) for f in feats], axis=-1))
    return self.conv_seg(self.dropout(self.align(self.hamburger(x, bases))))


HEADS = {"mlp": AllMLPHead, "ham": LightHamHead}


class Segmenter(nnx.Module):
  """`backbone` (a model spec `{name, **kw}`) + a decode head on the stages `in_index`: `head`
  "mlp" (`AllMLPHead`) or "ham" (`LightHamHead`, options in `ham`: ham_channels, rank,
  train_steps, eval_steps, num_groups)."""

  def __init__(self, *, backbone: Mapping[str, Any], num_classes: int,
               in_index: Sequence[int] = (0, 1, 2, 3), channels: int = 256,
               dropout: float = 0.1, head: str = "mlp", ham: Mapping[str, Any] | None = None,
               dtype=jnp.float32, rngs: nnx.Rngs):
    spec = dict(backbone.to_dict() if hasattr(backbone, "to_dict") else backbone)
    self.backbone = models.build({**spec, "num_classes": None, "dtype": dtype}, rngs=rngs)
    self.in_index = tuple(in_index)
    dims = self.backbone.stage_channels
    if head not in HEADS:
      raise ValueError(f"segmenter head {head!r} not in {sorted(HEADS)}")
    if ham is not None and head != "ham":
      raise ValueError(f"segmenter: `ham` options given for head {head!r}")
    extra = dict(ham.to_dict() if hasattr(ham, "to_dict") else ham or {})
    self.head = HEADS[head]([dims[i] for i in self.in_index], num_classes, channels=channels,
                            dropout=dropout, dtype=dtype, rngs=rngs, **extra)
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

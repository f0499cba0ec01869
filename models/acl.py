"""Continual-learning networks: a staged backbone, one growing classifier, and ACL's adapters.

ACL (Zhang et al., "Adapter Learning in Pretrained Feature Extractor for Continual Learning of
Diseases", MICCAI 2023, arXiv 2304.09042; official code GiantJun/CL_Pytorch,
``backbone/adapter_cl_net.py``):
* adapter (``Special_Adapter_v1``): ``x + alpha * relu(BN2(convT(relu(BN1(conv(x))))))``, 3x3 conv
  and transposed conv with padding 0 (the conv shrinks H, W by 2, the transposed conv restores
  them),
  C -> C -> C channels with biases, BN momentum 0.1 / eps 1e-5, alpha a learnable scalar (0.02);
* one adapter per task before each hooked stage of a frozen backbone;
* per task t a head ``Linear(F, C_t + 1)`` whose last output is "others", and an auxiliary head of
  the same size trained in phase 1 (task 0 trains ``heads/0`` directly: the code copies its
  freshly made aux head into it);
* modes: ``newest`` (adapter t at every hook, aux head t; head 0 for task 0) and ``all`` (T paths,
  path i through adapter i at every hook, head i on path i, logits concatenated).

Backbones are "staged": ``stem(x)``, ``stage(i, x)``, ``pool(x)``; ResNet's stages are layer1..4
(torchvision names, so pretrained weights load), MobileNetV2's (`models.mobilenet_v2`, torchvision
names) start at ``features.3, .5, .12, .15`` (the official skin8 config's hook layers),
``staged_cnn`` is a small one for digits.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import convert
from models.resnet import ACTIVATIONS, ResNet, max_pool_3x3_s2


class StagedCNN(nnx.Module):
  """A small backbone for 32x32 digits: stem conv3x3(w), then stages of conv3x3 - BN - ReLU with
  widths w * 2^i, stride 2 after the first; global mean pool."""

  def __init__(self, *, in_channels: int = 1, width: int = 16, num_stages: int = 3,
               rngs: nnx.Rngs):
    self.stem_conv = nnx.Conv(in_channels, width, (3, 3), use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    cin, convs, bns = width, [], []
    for i in range(num_stages):
      cout = width * 2 ** i
      convs.append(nnx.Conv(cin, cout, (3, 3), strides=1 if i == 0 else 2, use_bias=False,
                            rngs=rngs))
      bns.append(nnx.BatchNorm(cout, momentum=0.9, rngs=rngs))
      cin = cout
    self.convs, self.bns = nnx.List(convs), nnx.List(bns)
    self.stage_channels = tuple(width * 2 ** i for i in range(num_stages))
    self.stage_inputs = (width,) + self.stage_channels[:-1]
    self.num_features = cin

  def stem(self, x):
    return nnx.relu(self.stem_bn(self.stem_conv(x)))

  def stage(self, i: int, x):
    return nnx.relu(self.bns[i](self.convs[i](x)))

  @property
  def num_stages(self) -> int:
    return len(self.convs)


def stem(backbone, x):
  if isinstance(backbone, ResNet):
    x = ACTIVATIONS[backbone.activation](backbone.bn1(backbone.conv1(x.astype(backbone.dtype))))
    return max_pool_3x3_s2(x)
  return backbone.stem(x)


def stage(backbone, i: int, x):
  if isinstance(backbone, ResNet):
    for blk in getattr(backbone, f"layer{i + 1}"):
      x = blk(x)
    return x
  return backbone.stage(i, x)


def num_stages(backbone) -> int:
  return 4 if isinstance(backbone, ResNet) else backbone.num_stages


def stage_inputs(backbone) -> tuple[int, ...]:
  """Channels entering each stage (ResNet-18: 64, 64, 128, 256)."""
  if isinstance(backbone, ResNet):
    w, e = backbone.conv1.out_features, backbone.layer1[0].expansion
    return (w, w * e, 2 * w * e, 4 * w * e)
  return backbone.stage_inputs


def _backbone(spec, rngs):
  spec = dict(spec.to_dict() if hasattr(spec, "to_dict") else spec)
  name = spec.pop("name")
  if name.startswith("resnet") or name == "mobilenet_v2":
    spec["num_classes"] = None
  return models.build({"name": name, **spec}, rngs=rngs)


def backbone_blocks(backbone, x, hook=None) -> list[jax.Array]:
  """The outputs of every stage (``hook(i, x)`` applied to each stage's input)."""
  x = stem(backbone, x)
  outs = []
  for i in range(num_stages(backbone)):
    x = stage(backbone, i, hook(i, x) if hook else x)
    outs.append(x)
  return outs


class IncrementalNet(nnx.Module):
  """A staged backbone and one linear head over every class of the run (logits of classes not
  seen yet are masked by the task). ``integration_levels``: learnable logits ``[L, L]`` (zeros =
  uniform weights) for the adaptive-KD method's integration of teacher blocks."""

  def __init__(self, *, backbone, num_classes: int, integration: bool = False, rngs: nnx.Rngs):
    self.backbone = _backbone(backbone, rngs)
    self.fc = nnx.Linear(self.backbone.num_features, num_classes, rngs=rngs)
    n = num_stages(self.backbone)
    self.integration = nnx.Param(jnp.zeros((n, n))) if integration else None

  def blocks(self, x) -> list[jax.Array]:
    return backbone_blocks(self.backbone, x)

  def head(self, blocks) -> tuple[jax.Array, jax.Array]:
    """(logits, pooled features) from the stage outputs."""
    feats = jnp.mean(blocks[-1], axis=(1, 2))
    return self.fc(feats), feats

  def __call__(self, x):
    return self.head(self.blocks(x))


class Adapter(nnx.Module):
  """CL_Pytorch ``Special_Adapter_v1(c, c, 3)`` plus the hook's residual:
  ``x + alpha * relu(BN2(convT(relu(BN1(conv(x))))))`` (padding 0 on both convolutions)."""

  def __init__(self, channels: int, *, kernel_size: int = 3, alpha: float = 0.02,
               rngs: nnx.Rngs):
    k = (kernel_size, kernel_size)
    self.conv = nnx.Conv(channels, channels, k, padding="VALID", rngs=rngs)
    self.bn1 = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.conv_t = nnx.ConvTranspose(channels, channels, k, padding="VALID", rngs=rngs)
    self.bn2 = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.alpha = nnx.Param(jnp.full((1,), alpha, jnp.float32))

  def __call__(self, x):
    out = nnx.relu(self.bn1(self.conv(x)))
    out = nnx.relu(self.bn2(self.conv_t(out)))
    return x + out * self.alpha[0]


class ACLNet(nnx.Module):
  """A frozen staged backbone with per-task adapters before the `hooks` stages, per-task heads with
  an "others" output and per-task auxiliary heads (tasks 1..T-1). ``hooks=()`` gives the "frozen
  extractor + per-task heads" baseline."""

  def __init__(self, *, backbone, task_sizes: Sequence[int], hooks: Sequence[int] = (0, 1, 2, 3),
               rngs: nnx.Rngs):
    self.backbone = _backbone(backbone, rngs)
    self.task_sizes = tuple(int(s) for s in task_sizes)
    self.hooks = tuple(int(h) for h in hooks)
    chans = stage_inputs(self.backbone)
    self.adapters = nnx.List([nnx.List([Adapter(chans[h], rngs=rngs) for _ in self.task_sizes])
                              for h in self.hooks])
    f = self.backbone.num_features
    self.heads = nnx.List([nnx.Linear(f, c + 1, rngs=rngs) for c in self.task_sizes])
    self.aux = nnx.List([nnx.Linear(f, c + 1, rngs=rngs) for c in self.task_sizes[1:]])

  def features(self, x, path: int):
    """Pooled features with adapter `path` at every hooked stage."""
    def hook(i, h):
      return self.adapters[self.hooks.index(i)][path](h) if i in self.hooks else h
    return jnp.mean(backbone_blocks(self.backbone, x, hook)[-1], axis=(1, 2))

  def newest(self, x, task: int) -> tuple[jax.Array, jax.Array]:
    """(logits [B, C_t + 1] of aux head t (head 0 for task 0), features) via adapter t."""
    feats = self.features(x, task)
    head = self.heads[0] if task == 0 else self.aux[task - 1]
    return head(feats), feats

  def all_heads(self, x, task: int) -> list[jax.Array]:
    """[logits of head i on path i for i <= task]."""
    return [self.heads[i](self.features(x, i)) for i in range(task + 1)]

  def __call__(self, x):
    return jnp.concatenate(self.all_heads(x, len(self.task_sizes) - 1), axis=-1)


models.register("staged_cnn", StagedCNN)
models.register("incremental_net", IncrementalNet)
models.register("acl_net", ACLNet)


@convert.register("torchvision_resnet_backbone")
@convert.register("torchvision_mobilenet_v2_backbone")
class TorchResNetBackbone(convert.TorchResNet):
  """A torchvision / timm ResNet or a torchvision MobileNetV2 checkpoint into the `backbone/` of
  `incremental_net` / `acl_net` (the file's `fc` / `classifier` is left unused: run with
  `strict=False`)."""

  def keys(self, path):
    return super().keys(path.removeprefix("backbone/"))

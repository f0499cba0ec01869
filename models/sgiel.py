"""SGIEL's two-stream ResNet-50 with a learnable shape subspace (Feng et al., "Shape-Erased Feature
Learning for Visible-Infrared Person Re-Identification", CVPR 2023, arXiv 2304.04205, Sec. 3;
official jiawei151/SGIEL_VIReID `model_bn.py` (`embed_net`) and `resnet.py`).

* Modality-specific stems (conv1 + BN + ReLU + 3x3/2 max-pool): `visible` and `thermal`; each has a
  second BN, `bn1_shape`, used when it embeds a body-shape map of its modality.
* Shared layers 1-4 (ResNet-50 bottlenecks, layer4 stride 1): convolutions shared, every BatchNorm
  three times: `bnK` (visible), `bnK_ir` (infrared), `bnK_shape` (shape maps); the same for the
  projection shortcut's BN (`downsample_bn`, `_ir`, `_shape`).
* GeM pooling with p = 3: `f_pool = (mean_hw x^3 + 1e-12)^(1/3)`.
* BNNecks (BatchNorm1d, shift frozen at 0, so without one here): `bottleneck` (visible),
  `bottleneck_ir`, `bottleneck_shape` -> f and f_s.
* Shape subspace P, P_s `[C, C/4]` (kaiming-normal, "linear": N(0, 1 / (C/4))), P^ = P with unit
  columns: `z = f P`, shape-erased `f_e = f - f P^ P^^T`, `z_s = f_s P_s`.
* Heads (Linear without bias, N(0, 0.001^2)): `classifier` on f (logit) and f_e (logit2),
  `classifier_shape` on z_s. (The code's `classifier_ir` is never used and is not built.)

`model(x_vis, x_ir, s_vis, s_ir)` is the training forward (the code's `mode=0`; visible and infrared
halves with their own BN statistics, the shape maps as one batch); `model.embed(x, modality)` the
test feature (the BNNeck output f, L2-normalised; modality "visible" or "infrared").
The code names differ from ours only by the converter `sgiel` (official checkpoints) and
`torchvision_resnet_sgiel` (ImageNet initialisation: both stems and every BN copy from the
ImageNet stem / BN; the code copies only the affine parameters into the `_ir` / `_shape` copies, so
their running statistics are to be skipped: `init_from.skip = "(_ir|_shape)/(mean|var)$|..."`).
"""
from __future__ import annotations

import re
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import convert
from models._vision_layers import batch_norm, conv
from models.resnet import max_pool_3x3_s2

MODAL_SUFFIX = {"visible": "", "infrared": "_ir", "shape": "_shape"}
_KAIMING_FAN_IN = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")  # the code's ResNet


def _bns(c, rngs, dtype):
  return {s: batch_norm(c, dtype=dtype, rngs=rngs) for s in MODAL_SUFFIX.values()}


class ModalBottleneck(nnx.Module):
  """ResNet bottleneck with shared convolutions and one BatchNorm per modality."""

  def __init__(self, cin, planes, stride, *, dtype, rngs):
    cout = planes * 4
    self.conv1 = conv(cin, planes, 1, use_bias=False, dtype=dtype, kernel_init=_KAIMING_FAN_IN,
                      rngs=rngs)
    self.conv2 = conv(planes, planes, 3, stride, use_bias=False, dtype=dtype,
                      kernel_init=_KAIMING_FAN_IN, rngs=rngs)
    self.conv3 = conv(planes, cout, 1, use_bias=False, dtype=dtype, kernel_init=_KAIMING_FAN_IN,
                      rngs=rngs)
    for i, c in ((1, planes), (2, planes), (3, cout)):
      for s, bn in _bns(c, rngs, dtype).items():
        setattr(self, f"bn{i}{s}", bn)
    self.has_downsample = stride != 1 or cin != cout
    if self.has_downsample:
      self.downsample_conv = conv(cin, cout, 1, stride, use_bias=False, dtype=dtype,
                                  kernel_init=_KAIMING_FAN_IN, rngs=rngs)
      for s, bn in _bns(cout, rngs, dtype).items():
        setattr(self, f"downsample_bn{s}", bn)

  def __call__(self, x, modality: str):
    s = MODAL_SUFFIX[modality]
    y = jax.nn.relu(getattr(self, f"bn1{s}")(self.conv1(x)))
    y = jax.nn.relu(getattr(self, f"bn2{s}")(self.conv2(y)))
    y = getattr(self, f"bn3{s}")(self.conv3(y))
    if self.has_downsample:
      x = getattr(self, f"downsample_bn{s}")(self.downsample_conv(x))
    return jax.nn.relu(y + x)


class Stem(nnx.Module):
  """conv1 7x7/2 + BN (`bn1`, or `bn1_shape` for shape maps) + ReLU + max-pool 3x3/2."""

  def __init__(self, width, *, dtype, rngs):
    self.conv1 = conv(3, width, 7, 2, use_bias=False, dtype=dtype, kernel_init=_KAIMING_FAN_IN,
                      rngs=rngs)
    self.bn1 = batch_norm(width, dtype=dtype, rngs=rngs)
    self.bn1_shape = batch_norm(width, dtype=dtype, rngs=rngs)

  def __call__(self, x, shape: bool = False):
    bn = self.bn1_shape if shape else self.bn1
    return max_pool_3x3_s2(jax.nn.relu(bn(self.conv1(x))))


def gem(x: jax.Array, p: float = 3.0) -> jax.Array:
  """Generalised-mean pooling `(mean_hw x^p + 1e-12)^(1/p)` of `[B, H, W, C]` (the code's GeM)."""
  return (jnp.mean(x.astype(jnp.float32) ** p, axis=(1, 2)) + 1e-12) ** (1.0 / p)


def _neck(c, rngs):
  """BatchNorm1d with weight N(1, 0.01), shift frozen at 0 (so none)."""
  return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, use_bias=False,
                       scale_init=lambda k, s, d=jnp.float32: 1 + 0.01 * jax.random.normal(k, s, d),
                       rngs=rngs)


class SGIELNet(nnx.Module):
  """See the module docstring. `depths` (3, 4, 6, 3) and `width` 64 are ResNet-50's."""

  def __init__(self, *, num_classes: int, depths: Sequence[int] = (3, 4, 6, 3), width: int = 64,
               last_stride: int = 1, dtype=jnp.float32, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.dtype = dtype
    self.visible = Stem(width, dtype=dtype, rngs=rngs)
    self.thermal = Stem(width, dtype=dtype, rngs=rngs)
    cin = width
    for i, n in enumerate(depths):
      planes = width * 2 ** i
      blocks = []
      for j in range(n):
        stride = (1 if i == 0 else 2 if i < 3 else last_stride) if j == 0 else 1
        blocks.append(ModalBottleneck(cin, planes, stride, dtype=dtype, rngs=rngs))
        cin = planes * 4
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.num_features = c = cin
    self.bottleneck, self.bottleneck_ir, self.bottleneck_shape = (_neck(c, rngs) for _ in range(3))
    linear_init = nnx.initializers.variance_scaling(1.0, "fan_out", "normal")  # N(0, 1/(C/4))
    self.proj = nnx.Param(linear_init(rngs.params(), (c, c // 4)))
    self.proj_shape = nnx.Param(linear_init(rngs.params(), (c, c // 4)))
    head_init = nnx.initializers.normal(0.001)
    self.classifier = nnx.Linear(c, num_classes, use_bias=False, kernel_init=head_init, rngs=rngs)
    self.classifier_shape = nnx.Linear(c // 4, num_classes, use_bias=False, kernel_init=head_init,
                                       rngs=rngs)

  def trunk(self, x, modality: str):
    for i in range(4):
      for blk in getattr(self, f"layer{i + 1}"):
        x = blk(x, modality)
    return x

  def unit_proj(self) -> jax.Array:
    """P^: P with each column L2-normalised (F.normalize(P, 2, 0), eps 1e-12)."""
    p = self.proj[...]
    return p / jnp.maximum(jnp.linalg.norm(p, axis=0, keepdims=True), 1e-12)

  def features(self, x_vis, x_ir, s_vis, s_ir) -> tuple[jax.Array, jax.Array]:
    """GeM-pooled features `(f_pool [2n, C]` (visible rows, then infrared), `f_pool_s [2n, C])`."""
    f_vis = self.trunk(self.visible(x_vis.astype(self.dtype)), "visible")
    f_ir = self.trunk(self.thermal(x_ir.astype(self.dtype)), "infrared")
    s = jnp.concatenate([self.visible(s_vis.astype(self.dtype), shape=True),
                         self.thermal(s_ir.astype(self.dtype), shape=True)])
    return jnp.concatenate([gem(f_vis), gem(f_ir)]), gem(self.trunk(s, "shape"))

  def heads(self, pool, pool_s) -> dict[str, dict[str, jax.Array]]:
    """BNNecks, the shape subspace and the classifiers on pooled features (first half visible)."""
    n = pool.shape[0] // 2
    feat = jnp.concatenate([self.bottleneck(pool[:n]), self.bottleneck_ir(pool[n:])])
    feat_s = self.bottleneck_shape(pool_s)
    p_hat = self.unit_proj()
    erased = feat - (feat @ p_hat) @ p_hat.T
    z = feat @ self.proj[...]
    z_s = feat_s @ self.proj_shape[...]
    return {"rgbir": {"bef": pool, "aft": feat, "logit": self.classifier(feat),
                      "logit2": self.classifier(erased), "zp": z, "other": erased},
            "shape": {"bef": pool_s, "aft": feat_s, "logit": self.classifier_shape(z_s),
                      "zp": z_s}}

  def __call__(self, x_vis, x_ir, s_vis, s_ir) -> dict[str, dict[str, jax.Array]]:
    """Training forward: `{"rgbir": {bef, aft, logit, logit2, zp, other}, "shape": {bef, aft,
    logit, zp}}` as the code returns it (rows: visible then infrared)."""
    return self.heads(*self.features(x_vis, x_ir, s_vis, s_ir))

  def embed(self, x, modality: str) -> jax.Array:
    """Test feature: BNNeck output of the modality's stream, L2-normalised."""
    stem, neck = ((self.visible, self.bottleneck) if modality == "visible"
                  else (self.thermal, self.bottleneck_ir))
    f = neck(gem(self.trunk(stem(x.astype(self.dtype)), modality)))
    return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


models.register("sgiel", SGIELNet)


# --- checkpoint names -------------------------------------------------------------------------
_OFFICIAL = ((re.compile(r"^visible/"), "visible_module.visible/"),
             (re.compile(r"^thermal/"), "thermal_module.thermal/"),
             (re.compile(r"^(layer\d)/"), r"base_resnet.base.\1/"),
             (re.compile(r"downsample_bn_(ir|shape)/"), r"dsbn_\1/"),
             (re.compile(r"^proj$"), "projs.0"), (re.compile(r"^proj_shape$"), "projs.1"))


@convert.register("sgiel")
class OfficialSGIEL(convert.TorchStateDict):
  """The official `embed_net` state dict (`train.py` checkpoints' `net`)."""
  ignore = re.compile(r"num_batches_tracked$|^base_resnet\.base\.(conv1|bn1)|classifier_ir|"
                      r"^(visible_module\.visible|thermal_module\.thermal)\.(layer|fc|bn1_ir)|"
                      r"^bottleneck(_ir|_shape)?\.bias$")

  def keys(self, path):
    for pat, rep in _OFFICIAL:
      path = pat.sub(rep, path)
    return (path if path.startswith("projs.") else convert.torch_key(path),)


_IMAGENET = ((re.compile(r"^(visible|thermal)/bn1(_shape)?/"), "bn1/"),
             (re.compile(r"^(visible|thermal)/"), ""),
             (re.compile(r"/(bn\d|downsample_bn)(_ir|_shape)/"), r"/\1/"))


@convert.register("torchvision_resnet_sgiel")
class ImageNetSGIEL(convert.TorchStateDict):
  """torchvision ResNet-50 into SGIEL: both stems from the stem, every BN copy from its BN. Skip
  the new layers: `init_from.skip = "^(bottleneck|classifier|proj)|(_ir|_shape)/(mean|var)$"`."""
  ignore = re.compile(r"num_batches_tracked$|^fc\.")

  def keys(self, path):
    for pat, rep in _IMAGENET:
      path = pat.sub(rep, path)
    return (convert.torch_key(path),)

"""Downstream heads on diffusion features (Meng et al. 2024, "Suppress Content Shift: Better
Diffusion Features via Off-the-Shelf Generation Techniques", github.com/Darkbblue/diffusion-content-
shift), NHWC, with the official module names so their state dicts load (`models.convert`):

- `GatePixelClassifier` (`scarce_segmentation_gate/segmentation/pixel_classifier.py`): per pixel and
  variant b, w_b = Linear(Dropout(BN(ReLU(Linear(x_b))))) (D -> 128 -> D); alpha = softmax_b(w)
  per channel; the feature sum_b alpha_b * x_b (and likewise for optional DDPM features) feeds the
  classifier Linear(->128), ReLU, BN, Linear(->32), ReLU, BN, Linear(->C) (256 / 128 for >= 30
  classes). Returns (logits, -mean_pixels ||alpha||_2), the norm over the variant axis.
- `CorrespondenceAggregator` (`correspondence_gate/correspondence/aggregation_network.py`): per
  image and variant, w_b = Linear(GAP(Dropout(BN(ReLU(conv3x3(x_b)))))) (one weight per channel),
  alpha = softmax_b(w); concat(sum_b alpha_b x_b, attention maps), then (the released
  `--algorithm conv`) a 3x3 conv without bias. Returns (features, -mean_images ||alpha||_2).
- `PixelMLP`: the classifier alone, DDPM-segmentation's pixel classifier (Baranchuk et al. 2022,
  "Label-Efficient Semantic Segmentation with Diffusion Models"), trained as an ensemble with a
  per-pixel majority vote (`ml_pipelines/tasks/diffusion_heads.py`).
Both use weight_num = 1 (the released runs). Initialisation: N(0, 0.02) linear/conv weights, zero
biases, as the official `init_weights` (pixel) and PyTorch defaults (correspondence).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import register
from models._vision_layers import batch_norm, conv, linear
from models.diffusion.layers import Identity


def _normal_linear(cin, cout, *, rngs):
  return nnx.Linear(cin, cout, kernel_init=nnx.initializers.normal(0.02),
                    bias_init=nnx.initializers.zeros, rngs=rngs)


def pixel_weight_assigner(dim, *, rngs) -> nnx.List:
  """Sequential(Linear(D, 128), ReLU, BN1d(128), Dropout(0.5), Linear(128, D))."""
  return nnx.List([_normal_linear(dim, 128, rngs=rngs), Identity(), batch_norm(128, rngs=rngs),
                   nnx.Dropout(0.5, rngs=rngs), _normal_linear(128, dim, rngs=rngs)])


def correspondence_weight_assigner(dim, *, rngs) -> nnx.List:
  """Sequential(conv3x3(D, 128, no bias), ReLU, BN2d, Dropout, GAP, Flatten, Linear(128, D))."""
  return nnx.List([conv(dim, 128, 3, use_bias=False, rngs=rngs), Identity(),
                   batch_norm(128, rngs=rngs), nnx.Dropout(0.5, rngs=rngs), Identity(), Identity(),
                   linear(128, dim, rngs=rngs)])


def assign(seq: nnx.List, x):
  """The weight assigner on one variant: Linear/conv, ReLU, BN, Dropout, [GAP], Linear."""
  h = seq[3](seq[2](jax.nn.relu(seq[0](x))))
  if h.ndim == 4:
    h = h.mean(axis=(1, 2))
  return seq[-1](h)


def assign_each(seq: nnx.List, x):
  """The assigner on each variant separately (so batch statistics never mix variants): [B, V, ...]
  -> [B, V, D]."""
  return jnp.stack([assign(seq, x[:, b]) for b in range(x.shape[1])], axis=1)


def combine(weights, x):
  """alpha = softmax over the variant axis 1; (sum_b alpha_b x_b, ||alpha||_2 over b)."""
  alpha = jax.nn.softmax(weights, axis=1)
  return jnp.sum(alpha * x, axis=1), jnp.linalg.norm(alpha, axis=1)


class PixelMLP(nnx.Module):
  """`layers`: Linear(D, h1), ReLU, BN, Linear(h1, h2), ReLU, BN, Linear(h2, C); x [N, D]."""

  def __init__(self, num_classes, dim, *, rngs):
    h1, h2 = (128, 32) if num_classes < 30 else (256, 128)
    self.layers = nnx.List([
        _normal_linear(dim, h1, rngs=rngs), Identity(), batch_norm(h1, rngs=rngs),
        _normal_linear(h1, h2, rngs=rngs), Identity(), batch_norm(h2, rngs=rngs),
        _normal_linear(h2, num_classes, rngs=rngs)])

  def classify(self, h):
    l = self.layers
    h = l[2](jax.nn.relu(l[0](h)))
    h = l[5](jax.nn.relu(l[3](h)))
    return l[6](h)

  def __call__(self, x):
    return self.classify(x)


class GatePixelClassifier(PixelMLP):
  """`__call__(x [N, V, D], ddpm [N, V2, D2] | None)` -> (logits [N, C], -sparsity)."""

  def __init__(self, num_classes, dim, ddpm_dim=0, *, rngs):
    super().__init__(num_classes, dim + ddpm_dim, rngs=rngs)
    self.weight_assigner = nnx.List([pixel_weight_assigner(dim, rngs=rngs)])
    self.weight_assigner_ddpm = nnx.List([pixel_weight_assigner(ddpm_dim, rngs=rngs)]
                                         if ddpm_dim else [])

  def __call__(self, x, ddpm=None):
    feats, norms = [], []
    for assigner, inp in ((self.weight_assigner[0], x),) + (
        ((self.weight_assigner_ddpm[0], ddpm),) if self.weight_assigner_ddpm else ()):
      f, n = combine(assign_each(assigner, inp), inp)
      feats.append(f)
      norms.append(n.mean())
    return self.classify(jnp.concatenate(feats, axis=-1)), -sum(norms)


class CorrespondenceAggregator(nnx.Module):
  """`__call__(x [B, V, H, W, D], attn [B, H, W, A])` -> (features [B, H, W, D + A], -sparsity).
  `conv_out`: the released `--algorithm conv` (default) adds the 3x3 conv."""

  def __init__(self, dim, attn_dim, conv_out: bool = True, *, rngs):
    self.conv_out = conv_out
    self.weight_assigner = nnx.List([correspondence_weight_assigner(dim, rngs=rngs)])
    self.out = nnx.List([conv(dim + attn_dim, dim + attn_dim, 3, use_bias=False, rngs=rngs)])

  def __call__(self, x, attn):
    w = assign_each(self.weight_assigner[0], x)
    f, n = combine(w[:, :, None, None, :], x)
    f = jnp.concatenate([f, attn], axis=-1)
    if self.conv_out:
      f = self.out[0](f)
    return f, -n.mean()


@register("pixel_mlp")
def pixel_mlp(*, rngs, num_classes: int, dim: int):
  """DDPM-segmentation's pixel classifier (`models.diffusion.heads.PixelMLP`)."""
  return PixelMLP(num_classes, dim, rngs=rngs)


@register("gate_pixel_classifier")
def gate_pixel_classifier(*, rngs, num_classes: int, dim: int, ddpm_dim: int = 0):
  """The GATE pixel classifier (`models.diffusion.heads.GatePixelClassifier`)."""
  return GatePixelClassifier(num_classes, dim, ddpm_dim, rngs=rngs)


@register("gate_correspondence")
def gate_correspondence(*, rngs, dim: int, attn_dim: int, conv_out: bool = True):
  """The GATE correspondence aggregator (`models.diffusion.heads.CorrespondenceAggregator`)."""
  return CorrespondenceAggregator(dim, attn_dim, conv_out, rngs=rngs)


class PixelEnsemble(nnx.Module):
  """`members` pixel classifiers trained side by side (DDPM-segmentation's ensemble of 10):
  GATE classifiers over the variant axis (`gate=True`) or plain MLPs on the concatenated variants.
  `__call__(x [N, V, D], ddpm=None)` -> (logits [M, N, C], -sparsity [M])."""

  def __init__(self, num_classes, dim, variants, members=10, gate=True, ddpm_dim=0, *, rngs):
    self.gate = gate
    self.members = nnx.List([
        GatePixelClassifier(num_classes, dim, ddpm_dim, rngs=rngs) if gate
        else PixelMLP(num_classes, dim * variants, rngs=rngs) for _ in range(members)])

  def __call__(self, x, ddpm=None):
    if self.gate:
      outs = [m(x, ddpm) for m in self.members]
      return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])
    flat = x.reshape(x.shape[0], -1)
    return jnp.stack([m(flat) for m in self.members]), jnp.zeros((len(self.members),))


def majority_vote(logits):
  """Per-pixel mode of the members' argmax ([M, N, C] -> [N]); ties go to the smallest class, as
  `torch.mode`."""
  votes = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1]).sum(0)
  return jnp.argmax(votes, -1)


@register("pixel_ensemble")
def pixel_ensemble(*, rngs, num_classes: int, dim: int, variants: int = 1, members: int = 10,
                   gate: bool = True, ddpm_dim: int = 0):
  """`models.diffusion.heads.PixelEnsemble`."""
  return PixelEnsemble(num_classes, dim, variants, members, gate, ddpm_dim, rngs=rngs)


# --- semantic segmentation over feature variants (GATE's mmseg segmentors) ---------------------
class ResBlock(nnx.Module):
  """x + BN(conv3x3(ReLU(BN(conv3x3(x))))) (the official `ResBlock`), every conv and BN weight and
  bias zero-initialised as released, so the block starts as the identity."""

  def __init__(self, dim, *, rngs):
    zero = nnx.initializers.zeros

    def conv_bn():
      c = conv(dim, dim, 3, kernel_init=zero, rngs=rngs)
      c.bias[...] = jnp.zeros_like(c.bias[...])
      bn = batch_norm(dim, rngs=rngs)
      bn.scale[...] = jnp.zeros_like(bn.scale[...])
      return nnx.List([c, bn])
    self.conv1, self.conv2 = conv_bn(), conv_bn()

  def __call__(self, x):
    h = jax.nn.relu(self.conv1[1](self.conv1[0](x)))
    return x + self.conv2[1](self.conv2[0](h))


class MultiRes(nnx.Module):
  """The official `MultiRes(dim, n)`: `[ResBlock(dim)] * n`, i.e. ONE block applied n times (shared
  weights; its state dict repeats the block under res.0 ... res.{n-1})."""

  def __init__(self, dim, n, *, rngs):
    self.n = n
    self.res = nnx.List([ResBlock(dim, rngs=rngs)])

  def __call__(self, x):
    for _ in range(self.n):
      x = self.res[0](x)
    return x


class ConvModule(nnx.Module):
  """mmcv `ConvModule(conv_cfg=None, norm_cfg=BN, act_cfg=ReLU)`: conv without bias, BN, ReLU."""

  def __init__(self, cin, cout, k, *, rngs):
    self.conv = conv(cin, cout, k, use_bias=False, rngs=rngs)
    self.bn = batch_norm(cout, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


def adaptive_avg_pool(x, size: int):
  """torch `AdaptiveAvgPool2d(size)` on NHWC: bin i covers [floor(i H / s), ceil((i + 1) H / s))."""
  h, w = x.shape[1:3]
  bins = lambda n: [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]
  rows = [jnp.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in bins(w)], axis=1)
          for r0, r1 in bins(h)]
  return jnp.stack(rows, axis=1)


class UPerHead(nnx.Module):
  """mmseg `UPerHead` (Xiao et al. 2018, "Unified Perceptual Parsing"): a pyramid pooling module on
  the last input (adaptive pools, 1x1 ConvModules, bilinear back, concat, 3x3 bottleneck), 1x1
  laterals on the others, a top-down path adding each level resized (bilinear, align_corners
  False) to the previous one's size, 3x3 FPN convs, everything resized to the FIRST input's size,
  concatenated, a 3x3 bottleneck, Dropout2d, a 1x1 classifier. With GATE's configs the first
  input is the coarsest level, so logits come out at its resolution."""

  def __init__(self, in_channels, num_classes, channels=512, pool_scales=(1, 2, 3),
               dropout=0.1, *, rngs):
    self.pool_scales = tuple(pool_scales)
    self.psp_modules = nnx.List([nnx.List([Identity(), ConvModule(in_channels[-1], channels, 1,
                                                                  rngs=rngs)])
                                 for _ in pool_scales])
    self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3,
                                 rngs=rngs)
    self.lateral_convs = nnx.List([ConvModule(c, channels, 1, rngs=rngs)
                                   for c in in_channels[:-1]])
    self.fpn_convs = nnx.List([ConvModule(channels, channels, 3, rngs=rngs)
                               for _ in in_channels[:-1]])
    self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, broadcast_dims=(1, 2), rngs=rngs)
    self.conv_seg = conv(channels, num_classes, 1, rngs=rngs)

  def __call__(self, inputs):
    from models.segmenter import resize_bilinear
    up = lambda a, ref: resize_bilinear(a, *ref.shape[1:3])
    x = inputs[-1]
    psp = [x] + [up(m[1](adaptive_avg_pool(x, s)), x)
                 for s, m in zip(self.pool_scales, self.psp_modules)]
    laterals = [lat(f) for lat, f in zip(self.lateral_convs, inputs)]
    laterals.append(self.bottleneck(jnp.concatenate(psp, axis=-1)))
    for i in range(len(laterals) - 1, 0, -1):
      laterals[i - 1] = laterals[i - 1] + up(laterals[i], laterals[i - 1])
    outs = [c(l) for c, l in zip(self.fpn_convs, laterals)] + [laterals[-1]]
    outs = [outs[0]] + [up(o, outs[0]) for o in outs[1:]]
    return self.conv_seg(self.dropout(self.fpn_bottleneck(jnp.concatenate(outs, axis=-1))))


class FCNHead(nnx.Module):
  """mmseg `FCNHead(num_convs=1, kernel_size=3, concat_input=False)`: a 3x3 ConvModule, Dropout2d,
  a 1x1 classifier (GATE's auxiliary head on the second level)."""

  def __init__(self, cin, num_classes, channels=512, dropout=0.1, *, rngs):
    self.convs = nnx.List([ConvModule(cin, channels, 3, rngs=rngs)])
    self.dropout = nnx.Dropout(dropout, broadcast_dims=(1, 2), rngs=rngs)
    self.conv_seg = conv(channels, num_classes, 1, rngs=rngs)

  def __call__(self, x):
    return self.conv_seg(self.dropout(self.convs[0](x)))


class DiffusionSegmentor(nnx.Module):
  """The diffusion-feature segmentors of GATE's semantic-segmentation configs (mmseg, Meng et al.
  2024; `segmentation/configs/gate_{ade,city}.py` and the segmentor modules they name), over V
  feature variants at L levels, each level one or more taps (`layer_dims[l]`, channels per tap):

  - per variant and tap: `MultiRes(c, 4)`; taps of a level concatenated;
  - `fusion="concat"` (`DiffusionSegmentor`, what the released configs instantiate): per variant
    and level `MultiRes(C_l, 2)`, the variants concatenated per level (V C_l channels), then a
    `ResBlock(V C_l)`;
  - `fusion="gate"` (`DiffusionGateSegmentor`): per level, the correspondence weight assigner
    (conv3x3, ReLU, BN, Dropout, GAP, Linear) on each variant, alpha = softmax over variants per
    channel, sum_v alpha_v x_v, then `MultiRes(C_l, 2)`;
  - `UPerHead` on the levels, `FCNHead` on level `aux_level` (the auxiliary head).

  `__call__(levels)` with levels[l] [B, V, H_l, W_l, C_l] -> (logits, auxiliary logits), each at
  its head's resolution (the task resizes them to the labels)."""

  def __init__(self, num_classes, layer_dims, variants, fusion="concat", channels=512,
               pool_scales=(1, 2, 3), dropout=0.1, aux_level=1, *, rngs):
    if fusion not in ("concat", "gate"):
      raise ValueError(f"fusion must be 'concat' or 'gate', got {fusion!r}")
    self.fusion, self.aux_level = fusion, aux_level
    self.layer_dims = tuple(tuple(d) for d in layer_dims)
    level_dims = [sum(d) for d in self.layer_dims]
    self.tap_blocks = nnx.List([nnx.List([MultiRes(c, 4, rngs=rngs) for d in self.layer_dims
                                          for c in d]) for _ in range(variants)])
    if fusion == "concat":
      self.sum_blocks = nnx.List([nnx.List([MultiRes(c, 2, rngs=rngs) for c in level_dims])
                                  for _ in range(variants)])
      self.fuse_blocks = nnx.List([ResBlock(variants * c, rngs=rngs) for c in level_dims])
      head_dims = [variants * c for c in level_dims]
    else:
      self.weight_assigners = nnx.List([correspondence_weight_assigner(c, rngs=rngs)
                                        for c in level_dims])
      self.fuse_blocks = nnx.List([MultiRes(c, 2, rngs=rngs) for c in level_dims])
      head_dims = level_dims
    self.decode_head = UPerHead(head_dims, num_classes, channels, pool_scales, dropout, rngs=rngs)
    self.auxiliary_head = FCNHead(head_dims[aux_level], num_classes, channels, dropout, rngs=rngs)

  def variant_level(self, v, level, x):
    """The per-tap blocks of variant v on one level's [B, H, W, C_l] and their concatenation."""
    first = sum(len(d) for d in self.layer_dims[:level])
    splits = np.cumsum(self.layer_dims[level])[:-1].tolist()
    parts = jnp.split(x, splits, axis=-1)
    return jnp.concatenate([self.tap_blocks[v][first + k](p) for k, p in enumerate(parts)], -1)

  def __call__(self, levels):
    fused = []
    for l, x in enumerate(levels):
      per_variant = [self.variant_level(v, l, x[:, v]) for v in range(x.shape[1])]
      if self.fusion == "concat":
        per_variant = [self.sum_blocks[v][l](f) for v, f in enumerate(per_variant)]
        fused.append(self.fuse_blocks[l](jnp.concatenate(per_variant, axis=-1)))
      else:
        stacked = jnp.stack(per_variant, axis=1)
        f, _ = combine(assign_each(self.weight_assigners[l], stacked)[:, :, None, None, :], stacked)
        fused.append(self.fuse_blocks[l](f))
    return self.decode_head(fused), self.auxiliary_head(fused[self.aux_level])


@register("diffusion_segmentor")
def diffusion_segmentor(*, rngs, num_classes: int, layer_dims, variants: int,
                        fusion: str = "concat", channels: int = 512, pool_scales=(1, 2, 3),
                        dropout: float = 0.1, aux_level: int = 1):
  """`models.diffusion.heads.DiffusionSegmentor`."""
  return DiffusionSegmentor(num_classes, layer_dims, variants, fusion, channels, pool_scales,
                            dropout, aux_level, rngs=rngs)

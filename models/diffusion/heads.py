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

"""RCPMOD's per-view autoencoders and outlier scores (ACM MM 2024, arXiv 2408.07819; official code
180400518/RCPMOD `model.py`, `evaluation.py`).

One MLP autoencoder per view: encoder Linear+ReLU layers along `arch` with a linear last layer, the
decoder mirroring it with ReLU and ending in Linear + Sigmoid (inputs are min-max normalised to
[0, 1]); no batch norm. `rcpmod` builds one per view from `archs` (tuples, latent sizes equal).

Scores of two views (official `evaluation`, `cross_transfer_completion`,
`batch_calculate_attr_scores`, `cal_final_scores`):
- `complete`: a sample missing a view takes as its latent the mean encoding of its k neighbours'
  inputs in that view (`multiview.knn_tables`);
- `attribute_scores`: per view, each sample's summed squared reconstruction error, min-max
  normalised over the samples that have the view; a missing view's score copies the other view's;
  the two views' scores are added;
- `fused_scores`: `R_w · minmax(attribute) + minmax(contrastive)`, the contrastive score the
  per-sample NT-Xent of the normalised completed latents over the whole set
  (`losses.outlier.nt_xent_scores`).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import linear


def _minmax(x: jax.Array, where: jax.Array | None = None) -> jax.Array:
  lo = jnp.min(x, initial=jnp.inf, where=where)
  hi = jnp.max(x, initial=-jnp.inf, where=where)
  return (x - lo) / (hi - lo)


class ViewAutoencoder(nnx.Module):
  def __init__(self, arch: Sequence[int], *, rngs: nnx.Rngs, dtype=jnp.float32):
    pairs = list(zip(arch, arch[1:]))
    self.encoder_layers = nnx.List([linear(a, b, rngs=rngs) for a, b in pairs])
    self.decoder_layers = nnx.List([linear(b, a, rngs=rngs) for a, b in reversed(pairs)])

  def encode(self, x):
    for i, layer in enumerate(self.encoder_layers):
      x = layer(nnx.relu(x) if i else x)
    return x

  def decode(self, z):
    for i, layer in enumerate(self.decoder_layers):
      z = layer(nnx.relu(z) if i else z)
    return nnx.sigmoid(z)

  def __call__(self, x):
    z = self.encode(x)
    return self.decode(z), z

  def load_torch(self, state_dict) -> None:
    """Copies the official `Autoencoder`'s PyTorch weights (`_encoder.{2i}.weight/.bias`,
    `_decoder.{2i}...`, Linear layers at even indices of its Sequentials) into this module."""
    named = [(layer, f"_encoder.{2 * i}") for i, layer in enumerate(self.encoder_layers)] + [
        (layer, f"_decoder.{2 * i}") for i, layer in enumerate(self.decoder_layers)]
    for layer, name in named:
      layer.kernel[...] = jnp.asarray(state_dict[f"{name}.weight"]).T
      layer.bias[...] = jnp.asarray(state_dict[f"{name}.bias"])


class RCPMOD(nnx.Module):
  """One `ViewAutoencoder` per view."""

  def __init__(self, *, archs: Sequence[Sequence[int]], rngs: nnx.Rngs):
    if len({a[-1] for a in archs}) != 1:
      raise ValueError(f"Every view's latent size must match, got {[a[-1] for a in archs]}.")
    self.views = nnx.List([ViewAutoencoder(a, rngs=rngs) for a in archs])

  def __call__(self, xs: Sequence[jax.Array]):
    return [ae(x) for ae, x in zip(self.views, xs)]


def complete(ae: ViewAutoencoder, z: jax.Array, x: jax.Array, knn: jax.Array,
             present: jax.Array) -> jax.Array:
  """Latents `z [n, l]` with missing rows replaced by the mean encoding of `x[knn]` `[n, k, F]`."""
  imputed = jnp.mean(ae.encode(x[knn]), axis=1)
  return jnp.where(present[:, None], z, imputed)


def attribute_scores(errors: Sequence[jax.Array], present: Sequence[jax.Array]) -> jax.Array:
  """Two views' per-sample reconstruction errors -> the summed normalised attribute score."""
  (e1, e2), (p1, p2) = errors, present
  s1, s2 = _minmax(e1, p1), _minmax(e2, p2)
  return jnp.where(p1, s1, s2) + jnp.where(p2, s2, s1)


def fused_scores(attribute: jax.Array, contrastive: jax.Array, weight: float) -> jax.Array:
  return weight * _minmax(attribute) + _minmax(contrastive)


def rcpmod(*, archs, rngs: nnx.Rngs) -> RCPMOD:
  return RCPMOD(archs=[tuple(a) for a in archs], rngs=rngs)


models.register("rcpmod", rcpmod)

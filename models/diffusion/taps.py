"""Activation taps: the UNet records the activations named by a static set of ids, nothing else.

Ids are those of the official extractor of Meng et al. 2024, "Not All Diffusion Model Activations
Have Been Evaluated as Discriminative Features" (github.com/Darkbblue/generic-diffusion-feature,
`feature/components/feature_extractor.py`): `{down|up}-level{i}-repeat{j}-res-{increment|out}`,
`...-vit-out`, `...-vit-block{k}-{out|self-q|self-k|self-v|self-map|cross-q|...|ffn-inner}`,
`{down|up}-level{i}-{downsampler|upsampler}-out`, `mid-repeat{j}-res-*`, `mid-vit-*`,
`unet-{in|after-conv-in|out}`.

A `Recorder` is made inside the traced forward, so it is pure: a requested id's value is returned,
and an unrequested one is never kept (XLA removes it; attention maps are not even formed). Every id
the network offers is noted, so a requested id the network does not have fails with the closest
valid ids. Token-shaped activations [B, HW, C] are returned as NHWC maps [B, H, W, C] (the official
code stores [B, C, H, W]); attention maps as [B, heads, queries, keys].
"""
from __future__ import annotations

import difflib
import math

import jax.numpy as jnp

ALL = "*"  # request every activation (the "list every activation" command)
ATTENTION_PLACES = ("down_cross", "mid_cross", "up_cross", "down_self", "mid_self", "up_self")


class Recorder:
  """Collects requested activations during one forward pass.

  requested: the tap ids (or `{ALL}`); attention: categories of the aggregated attention store
  (`up_cross`, ...): head-averaged maps of those layers whose query count lies in
  [(latent/4)^2, (latent/2)^2] (the official `AttentionStore(img/32, img/16)`).
  """

  def __init__(self, requested=frozenset(), attention=(), latent_size: int | None = None):
    self.requested = frozenset(requested)
    unknown = set(attention) - set(ATTENTION_PLACES)
    if unknown:
      raise ValueError(f"unknown attention categories {sorted(unknown)}; valid: {ATTENTION_PLACES}")
    self.attention = tuple(attention)
    self.latent_size = latent_size
    self.values: dict[str, jnp.ndarray] = {}
    self.offered: list[str] = []
    self.maps: dict[str, list] = {k: [] for k in self.attention}

  def wants(self, tap_id: str) -> bool:
    self.offered.append(tap_id)
    return ALL in self.requested or tap_id in self.requested

  def put(self, tap_id: str, value, hw: tuple[int, int] | None = None) -> None:
    """Records `value` under `tap_id` if requested; tokens [B, HW, C] become [B, H, W, C]."""
    if self.wants(tap_id):
      if value.ndim == 3 and hw is not None:
        value = value.reshape(value.shape[0], *hw, value.shape[-1])
      self.values[tap_id] = value

  def wants_map(self, tap_id: str, place: str, cross: bool, queries: int) -> tuple[bool, bool]:
    """(store the per-head map under `tap_id`, add the head mean to the attention store)."""
    category = f"{place}_{'cross' if cross else 'self'}"
    to_store = category in self.maps and self.latent_size is not None and (
        (self.latent_size // 4) ** 2 <= queries <= (self.latent_size // 2) ** 2)
    return self.wants(tap_id), to_store

  def store_map(self, place: str, cross: bool, mean_map) -> None:
    self.maps[f"{place}_{'cross' if cross else 'self'}"].append(mean_map)

  def aggregated_attention(self):
    """The official `aggregate_attention` + nearest resize to the latent size, concatenated along
    channels: per category (in the order asked) and per map size (in execution order), the mean
    over layers of that size, [B, s, s, keys] -> [B, latent, latent, keys]."""
    out = []
    for category in self.attention:
      by_size: dict[int, list] = {}
      for m in self.maps[category]:
        by_size.setdefault(int(math.isqrt(m.shape[1])), []).append(m)
      for size, maps in by_size.items():
        mean = jnp.mean(jnp.stack(maps), axis=0).reshape(maps[0].shape[0], size, size, -1)
        out.append(nearest_resize(mean, self.latent_size))
    return jnp.concatenate(out, axis=-1)

  def finish(self) -> dict[str, jnp.ndarray]:
    """The recorded taps; a requested id the network never offered fails with the closest ids."""
    unknown = sorted(self.requested - set(self.offered) - {ALL})
    if unknown:
      lines = [f"{u!r}: closest valid ids {difflib.get_close_matches(u, self.offered, 5, 0.5)}"
               for u in unknown]
      raise KeyError("unknown activation id(s):\n  " + "\n  ".join(lines))
    out = dict(self.values)
    if self.attention:
      out["attn"] = self.aggregated_attention()
    return out


def nearest_resize(x, size: int):
  """torch `F.interpolate(mode='nearest')` of NHWC `x` to size x size: index floor(i * in / out)."""
  h, w = x.shape[1:3]
  rows = (jnp.arange(size) * h) // size
  cols = (jnp.arange(size) * w) // size
  return x[:, rows][:, :, cols]

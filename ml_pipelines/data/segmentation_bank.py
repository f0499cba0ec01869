"""AUCSeg's Tail-class Memory Bank (T-Memory Bank) as a pure function on device state.

Han et al., "AUCSeg: AUC-oriented Pixel-level Long-tail Semantic Segmentation", NeurIPS 2024
(arXiv 2409.20398, Sec. 4.2); official boyuh/AUCSeg `mmseg/datasets/pipelines/t_memory_bank.py`
(`TMemoryBank`, the last transform of the training pipeline, one image at a time). For each tail
class c the bank keeps up to `memory_size` images that contained c, with the pixels of c. On one
image (store first, then paste, as the code):

* store: for every tail class present, write the image into the next free slot of c, or into a
  uniformly random slot once all are full;
* paste: of the tail classes absent from the image, choose `ceil(p_sample * #absent)` uniformly
  without replacement (a fraction, rounded up, not a probability), in random order; for each with
  a stored slot pick one uniformly, resize the stored image (bilinear) and its class-c pixel map
  (nearest) to `(int(H p_resize), int(W p_resize))`, place it at a uniform offset inside the image
  and overwrite the image pixels and labels (label c) where the map is set.

The code stores the image tensor itself, which the same call's pastes then modify in place (the
stored pixel coordinates are those from before the pastes). So storing the *final* image with the
*pre-paste* class maps is the same; and since the resize is deterministic we store the resized
copies: state `images [T, M, h, w, C]`, `masks [T, M, h, w]` (bool), `count [T]` (int32).

Resizing follows OpenCV, which the code calls (`cv2.resize`): bilinear with half-pixel centres and
edge clamping (`INTER_LINEAR`), nearest as `src = floor(dst * in / out)` (`INTER_NEAREST`, not
half-pixel).

The random choices are drawn from the step key (`draw_choices`), so a run is a deterministic
function of its seed and a resumed run continues exactly; `apply` takes them explicitly.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class BankConfig(NamedTuple):
  tail: tuple[int, ...]          # tail class ids (the official `small_index`)
  image_shape: tuple[int, int, int]  # (H, W, C) of the training crops
  memory_size: int = 5
  p_sample: float = 1.0
  p_resize: float = 1.0

  @property
  def stored_hw(self) -> tuple[int, int]:
    return int(self.image_shape[0] * self.p_resize), int(self.image_shape[1] * self.p_resize)

  @property
  def max_pastes(self) -> int:
    return math.ceil(len(self.tail) * self.p_sample)

  def paste_counts(self) -> np.ndarray:
    """`ceil(n * p_sample)` for n = 0 .. T absent tail classes, in Python floats as the code."""
    return np.array([math.ceil(n * self.p_sample) for n in range(len(self.tail) + 1)], np.int32)


class Choices(NamedTuple):
  """The random decisions for one image (-1 = none): `store_slot [T]`, and per paste
  `paste_class` (position in `tail`), `paste_slot`, `paste_y`, `paste_x` `[max_pastes]`."""
  store_slot: jax.Array
  paste_class: jax.Array
  paste_slot: jax.Array
  paste_y: jax.Array
  paste_x: jax.Array


def init(cfg: BankConfig, dtype=jnp.float32) -> dict[str, jax.Array]:
  h, w = cfg.stored_hw
  t, m, c = len(cfg.tail), cfg.memory_size, cfg.image_shape[2]
  return {"images": jnp.zeros((t, m, h, w, c), dtype), "masks": jnp.zeros((t, m, h, w), bool),
          "count": jnp.zeros((t,), jnp.int32)}


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """`[n_out, n_in]` weights of OpenCV's INTER_LINEAR along one axis."""
  src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
  lo = np.floor(src).astype(int)
  frac = src - lo
  m = np.zeros((n_out, n_in))
  m[np.arange(n_out), lo] += 1 - frac
  m[np.arange(n_out), np.minimum(lo + 1, n_in - 1)] += frac
  return m.astype(np.float32)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
  """OpenCV's INTER_NEAREST source index `min(floor(dst * n_in / n_out), n_in - 1)`."""
  return np.minimum(np.floor(np.arange(n_out) * (n_in / n_out)).astype(int), n_in - 1)


def _resize(cfg: BankConfig, image, mask):
  (big_h, big_w, _), (h, w) = cfg.image_shape, cfg.stored_hw
  rh, rw = _linear_matrix(big_h, h), _linear_matrix(big_w, w)
  small = jnp.einsum("yH,HWc,xW->yxc", rh, image.astype(jnp.float32), rw,
                     precision=jax.lax.Precision.HIGHEST)
  iy, ix = _nearest_index(big_h, h), _nearest_index(big_w, w)
  return small.astype(image.dtype), mask[..., iy[:, None], ix[None, :]]


def present_tail(cfg: BankConfig, label: jax.Array) -> jax.Array:
  """`[T]` bool: which tail classes occur in `label [H, W]`."""
  return jnp.any(label[None] == jnp.asarray(cfg.tail)[:, None, None], axis=(1, 2))


def draw_choices(cfg: BankConfig, key: jax.Array, present: jax.Array, count: jax.Array
                 ) -> Choices:
  """Uniform choices as the code's `random` calls make them, from `key`."""
  t, m, p = len(cfg.tail), cfg.memory_size, cfg.max_pastes
  k_store, k_order, k_slot, k_y, k_x = jax.random.split(key, 5)
  replace = jax.random.randint(k_store, (t,), 0, m)
  store_slot = jnp.where(present, jnp.where(count < m, count, replace), -1)
  absent = ~present
  n_paste = jnp.asarray(cfg.paste_counts())[absent.sum()]
  order = jnp.argsort(jnp.where(absent, jax.random.uniform(k_order, (t,)), 2.0))[:p]
  paste_class = jnp.where(jnp.arange(p) < n_paste, order, -1)
  filled = jnp.where(paste_class >= 0, count[jnp.maximum(paste_class, 0)], 0)
  slot = jnp.floor(jax.random.uniform(k_slot, (p,)) * filled).astype(jnp.int32)
  (big_h, big_w, _), (h, w) = cfg.image_shape, cfg.stored_hw
  return Choices(store_slot=store_slot, paste_class=paste_class,
                 paste_slot=jnp.where(filled > 0, slot, -1),
                 paste_y=jax.random.randint(k_y, (p,), 0, big_h - h + 1),
                 paste_x=jax.random.randint(k_x, (p,), 0, big_w - w + 1))


def apply(cfg: BankConfig, bank: dict, image: jax.Array, label: jax.Array, choices: Choices
          ) -> tuple[dict, jax.Array, jax.Array]:
  """One image `[H, W, C]` and its label `[H, W]` through the bank: `(bank, image, label)`."""
  tail = jnp.asarray(cfg.tail, label.dtype)
  (h, w), c = cfg.stored_hw, image.shape[-1]
  class_maps = label[None] == tail[:, None, None]                       # before the pastes
  for j in range(cfg.max_pastes):
    t, slot = jnp.maximum(choices.paste_class[j], 0), jnp.maximum(choices.paste_slot[j], 0)
    active = (choices.paste_class[j] >= 0) & (choices.paste_slot[j] >= 0)
    where = bank["masks"][t, slot] & active
    y, x = choices.paste_y[j], choices.paste_x[j]
    region = jax.lax.dynamic_slice(image, (y, x, 0), (h, w, c))
    image = jax.lax.dynamic_update_slice(
        image, jnp.where(where[..., None], bank["images"][t, slot], region), (y, x, 0))
    region = jax.lax.dynamic_slice(label, (y, x), (h, w))
    label = jax.lax.dynamic_update_slice(label, jnp.where(where, tail[t], region), (y, x))
  small, small_maps = _resize(cfg, image, class_maps)
  store = choices.store_slot >= 0
  rows, slots = jnp.arange(len(cfg.tail)), jnp.maximum(choices.store_slot, 0)
  keep_img = bank["images"][rows, slots]
  keep_mask = bank["masks"][rows, slots]
  bank = {"images": bank["images"].at[rows, slots].set(
              jnp.where(store[:, None, None, None], small[None], keep_img)),
          "masks": bank["masks"].at[rows, slots].set(jnp.where(store[:, None, None], small_maps,
                                                               keep_mask)),
          "count": jnp.where(store, jnp.maximum(bank["count"], choices.store_slot + 1),
                             bank["count"])}
  return bank, image, label


def apply_batch(cfg: BankConfig, bank: dict, images: jax.Array, labels: jax.Array,
                key: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
  """The images of a batch `[B, H, W, C]` one after another (`lax.scan`), choices from `key`."""
  def one(bank, xs):
    image, label, k = xs
    choices = draw_choices(cfg, k, present_tail(cfg, label), bank["count"])
    bank, image, label = apply(cfg, bank, image, label, choices)
    return bank, (image, label)

  bank, (images, labels) = jax.lax.scan(
      one, bank, (images, labels, jax.random.split(key, images.shape[0])))
  return bank, images, labels


def tail_classes(spec: str | Sequence[int]) -> tuple[int, ...]:
  """A tail list given as ids or as a dataset name with an official list (see `TAIL_CLASSES`)."""
  return tuple(TAIL_CLASSES[spec]) if isinstance(spec, str) else tuple(int(c) for c in spec)


# The official `small_index` lists (aucseg_configs/*.py; ADE20K's is 26..149 in another order, which
# only relabels the uniform draws), with the code's bank settings.
TAIL_CLASSES = {
    "ade20k": tuple(range(26, 150)),
    "cityscapes": (6, 12, 14, 15, 16, 17, 18),
    "coco_stuff164k": (
        3, 20, 97, 89, 87, 166, 16, 116, 127, 72, 131, 93, 55, 69, 63, 17, 13, 121, 62, 4, 23, 22,
        77, 61, 95, 138, 28, 98, 48, 25, 135, 144, 117, 113, 162, 19, 8, 146, 170, 41, 58, 80,
        115, 88, 132, 46, 163, 82, 158, 107, 18, 151, 21, 126, 50, 54, 71, 73, 168, 152, 75, 140,
        104, 14, 39, 1, 139, 150, 66, 118, 49, 74, 110, 52, 83, 37, 81, 10, 11, 149, 47, 26, 92,
        102, 67, 96, 68, 24, 40, 154, 124, 134, 156, 51, 12, 9, 33, 125, 36, 38, 129, 148, 65,
        141, 43, 31, 76, 29, 30, 91, 27, 42, 119, 44, 64, 35, 122, 79, 34, 32, 167, 70, 78,),
}
BANK_SETTINGS = {"ade20k": dict(p_sample=0.05, p_resize=0.4),
                 "cityscapes": dict(p_sample=1.0, p_resize=1.0),
                 "coco_stuff164k": dict(p_sample=0.05, p_resize=0.1)}

"""Pixel datasets from diffusion features (`ml_pipelines/jobs/diffusion_features.py` output): each
example is one labelled pixel with the features of every variant, as the label-scarce protocol of
DDPM-segmentation (Baranchuk et al. 2022) and the GATE pixel head train on pixels.

`config.data`: `feature_dirs` (one extraction directory per variant, same images in the same
order), `label_size` (features are resized bilinearly to the label resolution, 256 for the
DDPM-segmentation sets), `ignore_label` (255, dropped from training), `pool_seed` (None: the
released train / test split; an int: the "pool and reshuffle" split of the GATE code, see
`pooled_split`). Per image and variant the taps are resized and concatenated in the extraction
order; a pixel is x [V, D], label [].
"""
from __future__ import annotations

import json
import os
import random

import jax
import jax.numpy as jnp
import numpy as np

from ml_pipelines import data
from ml_pipelines.data import records

PREPARE = ("python -m ml_pipelines.jobs.diffusion_features "
           "--config=configs/diffusion/features.py:<dataset>_<set> --out=DIR")


def image_features(example: dict, order, size: int) -> np.ndarray:
  """The taps of one image, each resized (bilinear, half-pixel centres as torch
  `F.interpolate(mode='bilinear')`) to size x size and concatenated: [size, size, D]."""
  maps = [jax.image.resize(jnp.asarray(example[k], jnp.float32), (size, size, example[k].shape[-1]),
                           "bilinear", antialias=False) for k in order]
  return np.asarray(jnp.concatenate(maps, axis=-1))


def load_variants(feature_dirs, split: str, size: int):
  """(x [images, size, size, V, D], labels [images, size, size]) of the variants' directories."""
  per_variant, labels, names = [], None, None
  for d in feature_dirs:
    with open(os.path.join(d, "features.json")) as f:
      order = json.load(f)["order"]
    source = records.RecordSource(d, split, PREPARE)
    examples = [source[i] for i in range(len(source))]
    these = [str(e["name"]) for e in examples]
    if names is not None and these != names:
      raise ValueError(f"{d}: images differ from the first variant's ({these[:3]} vs {names[:3]})")
    names = these
    per_variant.append(np.stack([image_features(e, order, size) for e in examples]))
    if labels is None:
      labels = np.stack([e["label"] for e in examples]).astype(np.int32)
  dims = {v.shape[-1] for v in per_variant}
  if len(dims) != 1:
    raise ValueError(f"variants have different channel counts {sorted(dims)}")
  return np.stack(per_variant, axis=3), labels


def pooled_split(n_train: int, n_test: int, seed: int) -> dict[str, list[tuple[str, int]]]:
  """The GATE code's `shuffle_split` (`scarce_segmentation_gate/segmentation/datasets.py`): the
  train and test images pooled as [('train', i)...] + [('test', j)...], shuffled with Python's
  `random.shuffle` after `random.seed(seed)` (its `setup_seed`), the first `n_train` are the new
  train split and the rest the test split. The paper's numbers average five such runs (seeds)."""
  pooled = [("train", i) for i in range(n_train)] + [("test", j) for j in range(n_test)]
  random.Random(seed).shuffle(pooled)
  return {"train": pooled[:n_train], "test": pooled[n_train:]}


def split_images(config, split: str):
  """(x, labels) of `split`: the released split, or with `pool_seed` its share of the pooled,
  reshuffled train + test images (`pooled_split`)."""
  dirs, size, seed = tuple(config.feature_dirs), config.label_size, config.get("pool_seed")
  if seed is None:
    return load_variants(dirs, split, size)
  parts = {"train": load_variants(dirs, config.train_split, size),
           "test": load_variants(dirs, config.eval_split, size)}
  plan = pooled_split(len(parts["train"][1]), len(parts["test"][1]), int(seed))
  which = plan["train" if split == config.train_split else "test"]
  return tuple(np.stack([parts[s][k][i] for s, i in which]) for k in (0, 1))


@data.register("diffusion_pixels")
def diffusion_pixels(config, split: str) -> data.Dataset:
  x, y = split_images(config, split)
  x = x.reshape(-1, *x.shape[3:])
  y = y.reshape(-1)
  if split == config.train_split:
    keep = y != config.get("ignore_label", 255)
    x, y = x[keep], y[keep]
  return data.Dataset(source=data.ArraySource({"x": x.astype(np.float32), "label": y}),
                      element_spec={"x": (x.shape[1:], np.float32), "label": ((), np.int32)},
                      info={"variants": x.shape[1], "dim": x.shape[2]})


# --- semantic segmentation on per-level feature variants --------------------------------------
def resize_nearest(mask: np.ndarray, size: int) -> np.ndarray:
  """The whole mask at size x size (index floor(i * in / out)), as the feature job resizes the
  whole image."""
  h, w = mask.shape[:2]
  return mask[(np.arange(size) * h) // size][:, (np.arange(size) * w) // size]


class LevelFeatureSource:
  """One example per image: `level{l}` [V, H_l, W_l, C_l] (the taps of level l, concatenated in the
  order given, of every variant) and `label` [size, size] (its mask from a segmentation builder,
  matched by file name, resized whole). Read lazily: offline features of a large set are many
  times its image size (the official code extracts them on the fly instead)."""

  def __init__(self, feature_dirs, split: str, levels, masks, size: int):
    self.variants = [records.RecordSource(d, split, PREPARE) for d in feature_dirs]
    sizes = {len(v) for v in self.variants}
    if len(sizes) != 1:
      raise ValueError(f"variants hold different numbers of images: {sorted(sizes)}")
    self.levels, self.size = tuple(tuple(l) for l in levels), size
    self.masks = masks
    self.mask_index = {os.path.basename(str(image)): i for i, (image, _) in
                       enumerate(masks.pairs)}

  def __len__(self):
    return len(self.variants[0])

  def __getitem__(self, i):
    examples = [v[i] for v in self.variants]
    names = {str(e["name"]) for e in examples}
    if len(names) != 1:
      raise ValueError(f"example {i}: the variants hold different images {sorted(names)}")
    name = names.pop()
    if name not in self.mask_index:
      raise KeyError(f"{name}: no image of that name in the segmentation set")
    out = {f"level{l}": np.stack([np.concatenate([np.asarray(e[t], np.float32) for t in taps], -1)
                                  for e in examples]) for l, taps in enumerate(self.levels)}
    out["label"] = resize_nearest(self.masks[self.mask_index[name]]["mask"],
                                  self.size).astype(np.int32)
    return out


@data.register("diffusion_segmentation")
def diffusion_segmentation(config, split: str) -> data.Dataset:
  """Semantic segmentation on feature variants (GATE's segmentation configs): `feature_dirs` (one
  extraction per variant, made from the images of `dataset`'s `split`), `levels` (tap ids per
  level), masks from the `dataset` builder of `ml_pipelines/data/segmentation.py` (`ade20k` or
  `cityscapes` in their directory layouts under `data_dir`), resized whole to `label_size`."""
  from ml_pipelines.data import segmentation
  masks = data.get(config.dataset)(config, split).source
  if not isinstance(masks, segmentation.FileSource):
    raise ValueError(f"{config.dataset}: masks are matched to the extracted images by file name, "
                     "so use the directory layout (data_dir), not TFDS")
  source = LevelFeatureSource(tuple(config.feature_dirs), split, config.levels, masks,
                              int(config.label_size))
  with open(os.path.join(config.feature_dirs[0], "features.json")) as f:
    shapes = json.load(f)["shapes"]
  v = len(config.feature_dirs)
  spec = {f"level{l}": ((v, *shapes[taps[0]][:2], sum(shapes[t][-1] for t in taps)), np.float32)
          for l, taps in enumerate(config.levels)}
  spec["label"] = ((config.label_size,) * 2, np.int32)
  return data.Dataset(source=source, element_spec=spec,
                      info={"num_classes": segmentation.NUM_CLASSES[config.dataset]})

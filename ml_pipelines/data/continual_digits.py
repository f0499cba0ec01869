"""Digit variants for the continual-learning and class-imbalance demos (embedded, no download).

- `digits_rotated`: the digits turned by 90 degrees (a related but shifted source on which a
  small extractor is "pretrained" before the continual run on upright digits);
- `digits_long_tailed` (option `imbalance_ratio` rho): class c keeps the first
  ``round(n_max * rho^(-c / (C - 1)))`` of its training images (the exponential profile of Cui
  et al., CVPR 2019, "Class-Balanced Loss Based on Effective Number of Samples", Sec. 5), n_max the
  smallest class size so every class follows the profile exactly; the test split stays balanced.
"""
from __future__ import annotations

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import digits

SPEC = {"image": ((8, 8, 1), np.float32), "label": ((), np.int32)}


def _arrays(split: str) -> dict[str, np.ndarray]:
  images, target = digits.load()
  r = digits.rows(split)
  return {"image": (images[r] / 16.0).astype(np.float32)[..., None],
          "label": target[r].astype(np.int32)}


@data.register("digits_rotated")
def digits_rotated(config, split: str) -> data.Dataset:
  del config
  arrays = _arrays(split)
  arrays["image"] = np.ascontiguousarray(np.rot90(arrays["image"], k=1, axes=(1, 2)))
  return data.Dataset(source=data.ArraySource(arrays), element_spec=SPEC,
                      info={"num_classes": 10})


def long_tailed_counts(class_sizes, ratio: float) -> np.ndarray:
  """Images kept per class: round(n_max * ratio^(-c / (C - 1))), n_max = min(class_sizes)."""
  sizes = np.asarray(class_sizes)
  c = np.arange(len(sizes))
  return np.round(sizes.min() * float(ratio) ** (-c / (len(sizes) - 1))).astype(np.int64)


@data.register("digits_long_tailed")
def digits_long_tailed(config, split: str) -> data.Dataset:
  arrays = _arrays(split)
  if split == "train":
    labels = arrays["label"]
    keep_n = long_tailed_counts(np.bincount(labels), float(config.get("imbalance_ratio", 20.0)))
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(keep_n)])
    arrays = {k: v[np.sort(keep)] for k, v in arrays.items()}
  return data.Dataset(source=data.ArraySource(arrays), element_spec=SPEC,
                      info={"num_classes": 10})

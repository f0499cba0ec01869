"""scikit-learn's handwritten digits (1,797 8x8 images, 10 classes): the embedded default data.

It ships inside scikit-learn, so a new user trains on real images with no download. Splits are a
fixed 80/20 partition: "train" (1,437) and "test" (360). `load()` and `rows(split)` are the one copy
of the images and of this partition for every digits-based builder (`digits_rgb`,
`digits_retrieval`).
"""
from __future__ import annotations

import functools

import numpy as np

from ml_pipelines import data


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray]:
  """(images [1797, 8, 8] float64 in [0, 16], labels [1797] int64), as scikit-learn ships them."""
  from sklearn.datasets import load_digits
  d = load_digits()
  return d.images, d.target.astype(np.int64)


def rows(split: str) -> np.ndarray:
  """The rows of `split` ('train': the first 80% of a seed-0 permutation, 'test': the rest)."""
  n = len(load()[1])
  order = np.random.default_rng(0).permutation(n)
  cut = int(0.8 * n)
  parts = {"train": order[:cut], "test": order[cut:]}
  if split not in parts:
    raise ValueError(f"digits has splits 'train' and 'test', not {split!r}.")
  return parts[split]


def _arrays(split: str) -> dict[str, np.ndarray]:
  images, target = load()
  r = rows(split)
  return {"image": (images[r] / 16.0).astype(np.float32)[..., None],
          "label": target[r].astype(np.int32)}


@data.register("digits")
def digits(config, split: str) -> data.Dataset:
  del config
  return data.Dataset(source=data.ArraySource(_arrays(split)),
                      element_spec={"image": ((8, 8, 1), np.float32), "label": ((), np.int32)},
                      info={"num_classes": 10})

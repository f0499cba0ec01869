"""The official corruption protocol of RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD
`get_mask.py`, `get_outlier.py`, `run.py`) as a seeded transform of V views in [0, 1].

`corrupt(views, labels, rng, ...)`, in the official order:
1. `missing_mask`: `[n, V]` presence, every sample keeping at least one view, entry keep-rate
   `1 - missing_rate / V` (within 0.005; `get_mask`);
2. class outliers (`get_outlier`): `rate * n // 2` disjoint pairs of samples of different classes,
   both with >= 2 views and sharing >= V // 2 views, swap V // 2 of their common views;
3. attribute outliers (`get_attribute_outlier_rand`): `rate * n` other samples get every view
   replaced by U[0, 1) noise; then missing rows are zeroed and each view min-max normalised;
4. class-attribute outliers (`get_attr_class_outlier_rand`): pairs among the remaining samples
   swap V // 2 common views and get the other views replaced by noise; zeroed and normalised again.
Every draw comes from the one `np.random.Generator` (the official code mixes the global NumPy and
`random` states).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def missing_mask(num_views: int, n: int, missing_rate: float,
                 rng: np.random.Generator) -> np.ndarray:
  """`[n, V]` int32 presence flags (official `get_mask`)."""
  keep = 1.0 - missing_rate / num_views
  one_hot = np.eye(num_views, dtype=np.int32)[rng.integers(0, num_views, n)]
  if keep <= 1 / num_views:
    return one_hot
  if keep == 1:
    return np.ones((n, num_views), np.int32)
  while True:
    one_hot = np.eye(num_views, dtype=np.int32)[rng.integers(0, num_views, n)]
    ones = num_views * n * keep - n
    draw = (rng.integers(0, 100, (n, num_views)) < int(ones / (num_views * n) * 100))
    overlap = np.sum((draw + one_hot) > 1)
    ratio = ones / (1 - overlap / ones) / (num_views * n)
    draw = rng.integers(0, 100, (n, num_views)) < int(ratio * 100)
    matrix = ((draw + one_hot) > 0).astype(np.int32)
    if abs(keep - matrix.mean()) < 0.005:
      return matrix


def class_pairs(labels: np.ndarray, mask: np.ndarray, num_pairs: int,
                rng: np.random.Generator) -> np.ndarray:
  """`[num_pairs, 2]` disjoint pairs (i < j) of different classes, both having >= 2 views and
  sharing >= V // 2 views, taken in random order (official `generate_paired_indices`)."""
  i, j = np.triu_indices(len(labels), 1)
  mask = np.asarray(mask, bool)
  views = mask.sum(1)
  ok = ((mask[i] & mask[j]).sum(1) >= mask.shape[1] // 2) & (labels[i] != labels[j]) \
      & (views[i] >= 2) & (views[j] >= 2)
  candidates = np.stack([i[ok], j[ok]], 1)[rng.permutation(int(ok.sum()))]
  chosen, used = [], set()
  for a, b in candidates:
    if len(chosen) == num_pairs:
      break
    if a not in used and b not in used:
      chosen.append((a, b))
      used.update((a, b))
  if len(chosen) < num_pairs:
    raise ValueError(f"Only {len(chosen)} disjoint pairs of different classes sharing enough "
                     f"views exist; {num_pairs} were asked for.")
  return np.asarray(chosen, np.int64).reshape(-1, 2)


def _swap_pairs(views, mask, pairs, rng, noise_rest: bool):
  num_views = len(views)
  for a, b in pairs:
    common = np.flatnonzero(mask[a] & mask[b])
    swap = rng.choice(common, num_views // 2, replace=False)
    for v in swap:
      views[v][[a, b]] = views[v][[b, a]]
    if noise_rest:
      for v in np.setdiff1d(np.arange(num_views), swap):
        views[v][[a, b]] = rng.random((2, views[v].shape[1]))


def _zero_and_normalise(views, mask):
  out = []
  for v, m in zip(views, mask.T):
    v = v * m[:, None]
    out.append((v - v.min()) / (v.max() - v.min()))
  return out


def corrupt(views: Sequence[np.ndarray], labels: np.ndarray, rng: np.random.Generator, *,
            missing_rate: float = 0.3, class_rate: float = 0.05, attribute_rate: float = 0.05,
            attribute_class_rate: float = 0.05):
  """(views, `[n, V]` presence mask, `[n]` 0/1 outlier flags, `[n]` 0/1 class-outlier flags)."""
  views = [np.array(v, np.float64) for v in views]
  labels = np.asarray(labels)
  n = len(labels)
  mask = missing_mask(len(views), n, missing_rate, rng)
  flags = np.zeros(n, np.int32)
  if class_rate:
    pairs = class_pairs(labels, mask, int(class_rate * n) // 2, rng)
    _swap_pairs(views, mask, pairs, rng, noise_rest=False)
    flags[pairs.ravel()] = 1
  class_flags = flags.copy()
  chosen = rng.choice(np.flatnonzero(flags == 0), int(attribute_rate * n), replace=False)
  for v in views:
    v[chosen] = rng.random((len(chosen), v.shape[1]))
  flags[chosen] = 1
  views = _zero_and_normalise(views, mask)
  if attribute_class_rate:
    rest = np.flatnonzero(flags == 0)
    pairs = rest[class_pairs(labels[rest], mask[rest], int(attribute_class_rate * n) // 2, rng)]
    _swap_pairs(views, mask, pairs, rng, noise_rest=True)
    flags[pairs.ravel()] = 1
    views = _zero_and_normalise(views, mask)
  return views, mask, flags, class_flags

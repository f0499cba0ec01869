"""A seeded validation split carved out of a training split, for methods that estimate weights on
held-out data (G-Blending, Wang et al., CVPR 2020, Eq. 6, measures overfitting on data held out of
training) without ever reading the test split.

`rows(n, fraction, seed)`: a permutation of `range(n)` by `np.random.default_rng(seed)`; its first
`round(fraction * n)` entries are the validation rows, the rest the training rows (both sorted,
disjoint, deterministic in `(n, fraction, seed)`). `carve(source, split, fraction, seed)` is the
source of split `train` (training rows only) or `val` (validation rows) of a whole training source.
"""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "val")


def rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train_rows, val_rows) of a training split of `n` examples."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"val_fraction must lie in (0, 1), not {fraction}.")
  n_val = int(round(fraction * n))
  if not 0 < n_val < n:
    raise ValueError(f"val_fraction {fraction} of {n} training examples leaves an empty split.")
  order = np.random.default_rng(seed).permutation(n)
  return np.sort(order[n_val:]), np.sort(order[:n_val])


class Rows:
  """Random access over rows `rows` of `source`."""

  def __init__(self, source, rows_: np.ndarray):
    self.source, self.rows = source, np.asarray(rows_)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i: int):
    return self.source[int(self.rows[i])]


def carve(source, split: str, fraction: float, seed: int) -> Rows:
  """Split `split` ('train' or 'val') of the whole training `source`."""
  if split not in SPLITS:
    raise ValueError(f"A held-out split is one of {SPLITS}, not {split!r}.")
  train, val = rows(len(source), fraction, seed)
  return Rows(source, train if split == "train" else val)

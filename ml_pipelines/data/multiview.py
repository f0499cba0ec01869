"""Partial multi-view data for RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD).

- `check_views`: views must hold the same samples (one row each): a clear error otherwise.
- `knn_tables` (official `get_knn_indices`): for each view, the k nearest neighbours (Euclidean,
  scikit-learn, self excluded) among the samples that have that view, from a pool of `pool`
  (40 when k < 10, as the code); a sample *missing* view 1 borrows its view-2 neighbour list with
  the samples that also miss view 1 removed, and keeps the first k (and the other way round). Where
  the official code fails (fewer than k borrowed neighbours survive), this raises a clear error.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def check_views(views: Sequence[np.ndarray], mask: np.ndarray | None = None) -> None:
  """Raises unless every view (and the `[n, V]` missing-view mask) has the same sample count."""
  counts = [len(v) for v in views]
  if mask is not None:
    counts.append(len(mask))
  if len(set(counts)) > 1:
    what = ", ".join(f"view {i}: {c}" for i, c in enumerate(counts[:len(views)]))
    if mask is not None:
      what += f", mask: {counts[-1]}"
    raise ValueError(f"Views must hold the same samples, one row each; sample counts differ "
                     f"({what}).")


def _neighbours(x: np.ndarray, present: np.ndarray, pool: int) -> np.ndarray:
  """`[n, pool - 1]` neighbour ids (original numbering) of present samples; -1 rows elsewhere."""
  from sklearn.neighbors import NearestNeighbors
  ids = np.flatnonzero(present)
  if len(ids) < pool:
    raise ValueError(f"Only {len(ids)} samples have this view; the neighbour pool needs {pool}.")
  found = NearestNeighbors(n_neighbors=pool).fit(x[ids]).kneighbors(x[ids])[1][:, 1:]
  out = np.full((len(x), pool - 1), -1, np.int64)
  out[ids] = ids[found]
  return out


def knn_tables(x1: np.ndarray, x2: np.ndarray, present1: np.ndarray, present2: np.ndarray,
               k: int = 6, pool: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(`[n, k]` view-1 neighbour ids, `[n, k]` view-2 neighbour ids) (module docstring)."""
  check_views([x1, x2])
  if len(present1) != len(x1) or len(present2) != len(x1):
    raise ValueError(f"The missing-view flags cover {len(present1)} / {len(present2)} samples, the "
                     f"views {len(x1)}.")
  pool = pool or (40 if k < 10 else 140)
  present1, present2 = np.asarray(present1, bool), np.asarray(present2, bool)
  full1, full2 = _neighbours(x1, present1, pool), _neighbours(x2, present2, pool)
  tables = []
  for full, other, present in ((full1, full2, present1), (full2, full1, present2)):
    table = full[:, :k].copy()
    for i in np.flatnonzero(~present):
      borrowed = [j for j in other[i] if present[j]][:k]
      if len(borrowed) < k:
        raise ValueError(f"Sample {i} misses a view and only {len(borrowed)} of its neighbours in "
                         f"the other view have it; k={k} needs more (raise the pool).")
      table[i] = borrowed
    tables.append(table)
  return tables[0], tables[1]

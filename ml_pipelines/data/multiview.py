"""Partial multi-view data for RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD).

- `check_views`: views must hold the same samples (one row each): a clear error otherwise.
- `knn_tables` (official `get_knn_indices`): for each view, the k nearest neighbours (Euclidean,
  scikit-learn, self excluded) among the samples that have that view, from a pool of `pool`
  (40 when k < 10, as the code); a sample *missing* view 1 borrows its view-2 neighbour list with
  the samples that also miss view 1 removed, and keeps the first k (and the other way round). Where
  the official code fails (fewer than k borrowed neighbours survive), this raises a clear error.
- `pair_knn_tables`: the same for one pair of views out of V, over the samples having at least one
  of the two (the official `run.py` trains and scores each pair on that subset), ids in the whole
  set's numbering.
- the `multiview_outliers` dataset: V views (two by default) corrupted by the official protocol.
"""
from __future__ import annotations

import functools
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


def pair_knn_tables(xa: np.ndarray, xb: np.ndarray, present_a: np.ndarray, present_b: np.ndarray,
                    k: int = 6, pool: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`knn_tables` of views a and b over the samples having at least one of them, in the whole set's
  ids; rows of samples having neither point at the sample itself (every term masks them out)."""
  present_a, present_b = np.asarray(present_a, bool), np.asarray(present_b, bool)
  covered = np.flatnonzero(present_a | present_b)
  local = knn_tables(xa[covered], xb[covered], present_a[covered], present_b[covered], k, pool)
  out = []
  for table in local:
    full = np.repeat(np.arange(len(xa))[:, None], table.shape[1], axis=1)
    full[covered] = covered[table]
    out.append(full)
  return out[0], out[1]


# --- multi-view outlier sets ----------------------------------------------------------------------
def _digits_views() -> tuple[list[np.ndarray], np.ndarray]:
  """scikit-learn digits as two views: the 64 pixels, and 8 row sums + 8 column sums + the 16
  means of 2x2 blocks (each view min-max normalised over the whole matrix, as the official code)."""
  from ml_pipelines.data import digits
  images, labels = digits.load()
  pooled = images.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(images), 16)
  v2 = np.concatenate([images.sum(2), images.sum(1), pooled], axis=1)
  v1 = images.reshape(len(images), 64)
  norm = lambda v: (v - v.min()) / (v.max() - v.min())
  return [norm(v1), norm(v2)], labels


def _generated_views(n: int, classes: int, rng: np.random.Generator):
  """Class clusters seen through three random non-linear maps (dims 20, 12, 16), squashed to
  [0, 1]; the third map comes from a spawned generator, so the first two views (and the draws
  after them) are the same whichever views are used."""
  labels = rng.integers(0, classes, n)
  centres = rng.normal(size=(classes, 8)) * 2.0
  latent = centres[labels] + 0.5 * rng.normal(size=(n, 8))
  third = rng.spawn(1)[0].normal(size=(8, 16))
  views = [1 / (1 + np.exp(-np.tanh(latent @ m) * 2))
           for m in (rng.normal(size=(8, 20)), rng.normal(size=(8, 12)), third)]
  return views, labels


@functools.lru_cache(maxsize=4)
def outlier_view_arrays(source: str, seed: int, rates: tuple[float, float, float],
                        missing_rate: float, num_samples: int = 600, data_dir: str = "",
                        views: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
  """The chosen views corrupted by the official protocol (`multiview_outliers.corrupt`; `rates`:
  class, attribute, class-attribute outliers), rows of a missing view zeroed: `x1..xV`,
  `present1..presentV`, `outlier`, `label`. `source`: `digits` (2 views), `generated` (3 views)
  or a benchmark of `multiview_mat` read from `data_dir`; `views`: which of them (default: the
  official ones for a benchmark, the first two otherwise)."""
  from ml_pipelines.data import multiview_mat, multiview_outliers
  rng = np.random.default_rng(seed)
  if source == "digits":
    every, labels = _digits_views()
  elif source == "generated":
    every, labels = _generated_views(num_samples, 6, rng)
  elif source in multiview_mat.FILES:
    every, labels = multiview_mat.load_views(source, data_dir)
  else:
    raise ValueError(f"Unknown multi-view source {source!r}; 'digits', 'generated' or one of "
                     f"{', '.join(multiview_mat.FILES)}.")
  views = views or multiview_mat.OFFICIAL_VIEWS.get(source, (0, 1))
  if len(views) < 2 or max(views) >= len(every):
    raise ValueError(f"views={views}: {source} has {len(every)} views; choose two or more.")
  xs, present, outlier, _ = multiview_outliers.corrupt(
      [every[v] for v in views], labels, rng, missing_rate=missing_rate, class_rate=rates[0],
      attribute_rate=rates[1], attribute_class_rate=rates[2])
  check_views(xs, present)
  present = present.astype(bool)
  out = {f"x{i + 1}": x.astype(np.float32) for i, x in enumerate(xs)}
  out.update({f"present{i + 1}": present[:, i] for i in range(len(xs))})
  return {**out, "outlier": outlier, "label": labels.astype(np.int32)}


def _register():
  from ml_pipelines import data

  @data.register("multiview_outliers")
  def multiview_outliers(config, split: str) -> data.Dataset:
    """Transductive: every split is the whole corrupted set (outlier detection scores the data it
    trains on)."""
    del split
    arrays = outlier_view_arrays(config.source, int(config.get("data_seed", 0)),
                                 tuple(config.outlier_rates), float(config.missing_rate),
                                 int(config.get("num_samples", 600)), config.get("data_dir", ""),
                                 tuple(config.views) if config.get("views") else None)
    dims = tuple(v.shape[1] for k, v in arrays.items() if k.startswith("x"))
    return data.Dataset(source=data.ArraySource(arrays),
                        element_spec=data.spec_of({k: v[0] for k, v in arrays.items()}),
                        info={"dims": dims})


_register()

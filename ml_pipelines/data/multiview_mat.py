"""Readers of RCPMOD's benchmark files in the official layouts (ACM MM 2024, arXiv 2408.07819;
180400518/RCPMOD `datasets.py`), from a manual directory (`data_dir`); none is downloadable here.

| name | file | layout | views used officially |
|---|---|---|---|
| `scene15` | `Scene-15.mat` | `X` (1 x 3 cell), `Y` | 0, 1 |
| `landuse21` | `LandUse-21.mat` | `X` (1 x 3 cell, sparse allowed), `Y` | 1, 2 |
| `caltech101_20`, `caltech101` | `Caltech101-20.mat` / `Caltech101.mat` | `X` (1 x 6), `Y` | 0..5 |
| `handwritten` | `handwritten.mat` | `X` (1 x 6 cell), `Y` | 0..5 |
| `fashion` | `Fashion.mat` | `X1`, `X2`, `X3` ([n, 28, 28] or [n, 784]), `Y` | 0, 1 |
| `bdgp` | `bdgp.npz` | `n_views`, `view_<i>`, `labels` | 0, 1 |

Every view is min-max normalised over its whole matrix (`minmaxNormal` / `util.normalize`).
Fixes of the official loader: LandUse rows keep the file order (the official code permutes them
with an unseeded `random.sample`); BDGP is read from `data_dir` (not the working directory); the
Fashion label count comes from the file (not a hard-coded 10,000).
"""
from __future__ import annotations

import os

import numpy as np

FILES = {"scene15": "Scene-15.mat", "landuse21": "LandUse-21.mat",
         "caltech101_20": "Caltech101-20.mat", "caltech101": "Caltech101.mat",
         "handwritten": "handwritten.mat", "fashion": "Fashion.mat", "bdgp": "bdgp.npz"}
OFFICIAL_VIEWS = {"scene15": (0, 1), "landuse21": (1, 2), "fashion": (0, 1), "bdgp": (0, 1),
                  "caltech101_20": (0, 1), "caltech101": (0, 1), "handwritten": (0, 1, 2, 3, 4, 5)}


def _dense(x) -> np.ndarray:
  from scipy import sparse
  x = x.toarray() if sparse.issparse(x) else np.asarray(x)
  return x.reshape(len(x), -1).astype(np.float64)


def _minmax(x: np.ndarray) -> np.ndarray:
  return (x - x.min()) / (x.max() - x.min())


def load_views(name: str, data_dir: str) -> tuple[list[np.ndarray], np.ndarray]:
  """(every view `[n, F_v]` min-max normalised, `[n]` int labels) of `name` in `data_dir`."""
  if name not in FILES:
    raise ValueError(f"Unknown multi-view dataset {name!r}; one of {', '.join(FILES)}.")
  path = os.path.join(data_dir, FILES[name])
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: put the official {FILES[name]} (180400518/RCPMOD "
                            f"data/, or the authors' links) in data_dir.")
  if name == "bdgp":
    d = np.load(path)
    views = [_dense(d[f"view_{i}"]) for i in range(int(d["n_views"]))]
    labels = np.asarray(d["labels"]).ravel()
  else:
    import scipy.io
    mat = scipy.io.loadmat(path)
    if name == "fashion":
      views = [_dense(mat[k]) for k in ("X1", "X2", "X3")]
    else:
      cells = mat["X"]
      views = [_dense(cells.ravel()[i]) for i in range(cells.size)]
    labels = np.asarray(mat["Y"]).ravel()
  counts = {len(v) for v in views} | {len(labels)}
  if len(counts) > 1:
    raise ValueError(f"{path}: views and labels hold different sample counts "
                     f"({[len(v) for v in views]}, labels {len(labels)}).")
  return [_minmax(v) for v in views], labels.astype(np.int64)

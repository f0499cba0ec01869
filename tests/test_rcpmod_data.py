"""RCPMOD's benchmark readers on tiny fakes written in the official layouts (scipy.io `.mat` cells,
sparse LandUse views, Fashion's X1/X2/X3 images, BDGP's npz), and the Scene-15 config's data on
such a fake."""
import numpy as np
import pytest
import scipy.io
from scipy import sparse

from configs.outlier import rcpmod as rcpmod_config
from ml_pipelines import data
from ml_pipelines.data import multiview_mat

N = 60


def _cells(views):
  cells = np.empty((1, len(views)), dtype=object)
  for i, v in enumerate(views):
    cells[0, i] = v
  return cells


def _views(dims, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.random((N, d)) * (i + 2) for i, d in enumerate(dims)]


def _minmax(x):
  return (x - x.min()) / (x.max() - x.min())


@pytest.mark.parametrize("name,dims", [("scene15", (20, 59, 40)),
                                       ("handwritten", (7, 5, 4, 3, 6, 2)),
                                       ("caltech101_20", (4, 3, 5, 2, 6, 3))])
def test_cell_layouts(tmp_path, name, dims):
  views, labels = _views(dims), np.arange(N) % 5 + 1
  scipy.io.savemat(tmp_path / multiview_mat.FILES[name], {"X": _cells(views), "Y": labels[:, None]})
  got, y = multiview_mat.load_views(name, str(tmp_path))
  assert len(got) == len(dims) and (y == labels).all()
  for g, v in zip(got, views):
    np.testing.assert_allclose(g, _minmax(v))


def test_landuse_sparse_views_keep_the_file_order(tmp_path):
  views, labels = _views((20, 59, 40)), np.arange(N) % 21
  scipy.io.savemat(tmp_path / "LandUse-21.mat",
                   {"X": _cells([sparse.csr_matrix(v) for v in views]), "Y": labels[:, None]})
  got, y = multiview_mat.load_views("landuse21", str(tmp_path))
  np.testing.assert_allclose(got[1], _minmax(views[1]))
  assert (y == labels).all()  # no unseeded permutation


def test_fashion_images_and_bdgp_npz(tmp_path):
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (N, 28, 28)).astype(np.uint8) for _ in range(3)]
  scipy.io.savemat(tmp_path / "Fashion.mat", {"X1": images[0], "X2": images[1], "X3": images[2],
                                              "Y": (np.arange(N) % 10)[None]})
  got, y = multiview_mat.load_views("fashion", str(tmp_path))
  assert got[0].shape == (N, 784) and (y == np.arange(N) % 10).all()
  np.testing.assert_allclose(got[1], _minmax(images[1].reshape(N, 784).astype(float)))
  views = _views((17, 5))
  np.savez(tmp_path / "bdgp.npz", n_views=2, view_0=views[0], view_1=views[1],
           labels=np.arange(N) % 5)
  got, y = multiview_mat.load_views("bdgp", str(tmp_path))
  np.testing.assert_allclose(got[1], _minmax(views[1]))


def test_missing_file_and_mismatched_counts(tmp_path):
  with pytest.raises(FileNotFoundError, match="Scene-15.mat"):
    multiview_mat.load_views("scene15", str(tmp_path))
  views = _views((3, 4))
  scipy.io.savemat(tmp_path / "handwritten.mat",
                   {"X": _cells([views[0], views[1][:-1]]), "Y": np.arange(N)[:, None]})
  with pytest.raises(ValueError, match="different sample counts"):
    multiview_mat.load_views("handwritten", str(tmp_path))


def test_scene15_config_reads_and_corrupts_a_fake(tmp_path):
  n = 320
  rng = np.random.default_rng(2)
  cells = _cells([rng.random((n, 20)), rng.random((n, 59)), rng.random((n, 40))])
  scipy.io.savemat(tmp_path / "Scene-15.mat", {"X": cells, "Y": (np.arange(n) % 15)[:, None]})
  c = rcpmod_config.get_config("scene15")
  c.data.data_dir = str(tmp_path)
  arrays = data.get(c.data.name)(c.data, "train").source.arrays
  # the official counts: 2 * (0.02 n // 2) class + 0.05 n attribute + 2 * (0.08 n // 2) pairs
  assert arrays["outlier"].sum() == 6 + 16 + 24
  assert arrays["x1"].shape == (n, 20) and arrays["x2"].shape == (n, 59)  # views 0 and 1
  assert (arrays["present1"] | arrays["present2"]).all()
  assert c.model.archs[0][0] == 20 and c.model.archs[1][0] == 59

"""Multi-index hashing returns exactly the brute-force k-NN and radius results."""
import numpy as np
import pytest

from ml_pipelines.search import hamming
from ml_pipelines.search.multi_index import MultiIndex, split_bits


def _data(bits, n, seed, nq=6):
  rng = np.random.default_rng(seed)
  db = rng.integers(0, 2, (n, bits))
  db[10:40] = db[0]  # exact duplicates -> ties at every distance from some query
  q = rng.integers(0, 2, (nq, bits))
  q[0] = db[0]
  q[1] = db[5] ^ (rng.random(bits) < 0.1)
  dist = (q[:, None, :] != db[None]).sum(-1)
  return hamming.pack_bits(db), hamming.pack_bits(q), dist


def test_split_bits_official_rule():
  assert split_bits(64, 4) == [16, 16, 16, 16]
  assert split_bits(37, 4) == [10, 9, 9, 9]
  assert split_bits(100, 7) == [15, 15, 14, 14, 14, 14, 14]


@pytest.mark.parametrize("bits,m,n", [(16, 3, 400), (37, 4, 1500), (64, 5, 2000), (100, 7, 800),
                                      (128, 8, 1200)])
def test_knn_and_radius_equal_brute_force(bits, m, n):
  dbw, qw, dist = _data(bits, n, seed=bits)
  index = MultiIndex.build(dbw, bits, m=m)
  assert index.m == m
  for k in (1, 7, 50):
    d, i, buckets = index.knn(qw, k)
    ref_i = np.argsort(dist, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(d, np.take_along_axis(dist, ref_i, 1))
    assert (buckets >= 1).all()  # k = 1 may stop after the first table
  for r in (0, 2, min(bits // 4, 9)):
    off, ii, dd, _ = index.radius_search(qw, r)
    for qi in range(len(dist)):
      ref = np.nonzero(dist[qi] <= r)[0]
      ref = ref[np.argsort(dist[qi, ref], kind="stable")]
      np.testing.assert_array_equal(ii[off[qi]:off[qi + 1]], ref)
      np.testing.assert_array_equal(dd[off[qi]:off[qi + 1]], dist[qi, ref])


def test_blockwise_tables_and_bucket_counts(tmp_path):
  bits = 48
  dbw, qw, dist = _data(bits, 1000, seed=3)
  index = MultiIndex.build(dbw, bits, block_bits=[8, 24, 16])  # DMIH: one table per code block
  np.testing.assert_array_equal(index.bounds, [0, 8, 32, 48])
  d, i, _ = index.knn(qw, 20)
  ref_i = np.argsort(dist, axis=1, kind="stable")[:, :20]
  np.testing.assert_array_equal(i, ref_i)
  # Radius 4 = 1 * 3 + 1: tables 0, 1 at substring radii 0, 1 and table 2 at radius 0 only.
  _, _, _, buckets = index.radius_search(qw, 4)
  np.testing.assert_array_equal(buckets, (1 + 8) + (1 + 24) + 1)
  index.save(tmp_path / "ix.npz")
  again = MultiIndex.load(tmp_path / "ix.npz")
  np.testing.assert_array_equal(again.knn(qw, 20)[1], ref_i)


def test_single_table_is_bucket_search_within_radius():
  bits = 20
  dbw, qw, dist = _data(bits, 3000, seed=4)
  index = MultiIndex.build(dbw, bits, m=1)
  off, ii, _, buckets = index.radius_search(qw, 2)
  np.testing.assert_array_equal(buckets, 1 + 20 + 190)  # all codes within radius 2
  for qi in range(len(dist)):
    np.testing.assert_array_equal(np.sort(ii[off[qi]:off[qi + 1]]), np.nonzero(dist[qi] <= 2)[0])


def test_hash_index_cli_build_and_query(tmp_path, capsys):
  from ml_pipelines.search import hash_index
  rng = np.random.default_rng(5)
  centres = rng.integers(0, 2, (4, 32))
  y = rng.integers(0, 4, 400)
  db = centres[y] ^ (rng.random((400, 32)) < 0.05)
  np.savez(tmp_path / "db.npz", codes=2 * db - 1, labels=y)
  np.savez(tmp_path / "q.npz", codes=2 * db[:20] - 1, labels=y[:20])
  hash_index.main(["build", f"--codes={tmp_path / 'db.npz'}", f"--index={tmp_path / 'ix.npz'}", "--blocks=8,8,16"])
  summary = hash_index.query(tmp_path / "ix.npz", tmp_path / "q.npz", k=10, radius=2, out=tmp_path / "r.npz")
  assert summary["exact_on_checked"]
  assert summary["mAP@10"] == pytest.approx(1.0)  # well-separated clusters
  dist = (db[:20, None, :] != db[None]).sum(-1)
  with np.load(tmp_path / "r.npz") as r:
    np.testing.assert_array_equal(r["idx"], np.argsort(dist, axis=1, kind="stable")[:, :10])
    np.testing.assert_array_equal(np.diff(r["radius_offsets"]), (dist <= 2).sum(1))

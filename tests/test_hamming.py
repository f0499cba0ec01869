"""Packed Hamming distances and exact k-NN against a NumPy reference on unpacked bits."""
import numpy as np
import pytest

from ml_pipelines.search import hamming
def _reference(q_bits, db_bits, k):
  d = (q_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
  order = np.argsort(d, axis=1, kind="stable")[:, :k]
  return d, np.take_along_axis(d, order, 1), order


def test_pack_bits_bit_order_and_sign_codes():
  codes = np.zeros((2, 40), np.int8)
  codes[0, [0, 5, 31]] = 1
  codes[1, [32, 39]] = 1
  w = hamming.pack_bits(codes)
  assert w.dtype == np.uint32 and w.shape == (2, 2)
  np.testing.assert_array_equal(w, [[1 | 1 << 5 | 1 << 31, 0], [0, 1 | 1 << 7]])
  np.testing.assert_array_equal(hamming.pack_bits(2 * codes - 1), w)  # {-1,+1} codes
  np.testing.assert_array_equal(hamming.unpack_bits(w, 40), codes)


@pytest.mark.parametrize("bits", [7, 33, 64, 100, 200])  # 1, 1, 1, 2 and 4 64-bit words
def test_knn_cpu_and_jax_match_stable_numpy_ranking(bits):
  rng = np.random.default_rng(bits)
  db = rng.integers(0, 2, (600, bits))
  db[100:140] = db[3]  # many exact ties
  q = rng.integers(0, 2, (5, bits))
  q[0] = db[3]
  dbw, qw = hamming.pack_bits(db), hamming.pack_bits(2 * q - 1)
  full, ref_d, ref_i = _reference(q, db, 45)
  np.testing.assert_array_equal(hamming.hamming_distances_cpu(qw, dbw), full)
  for blocks in (dict(q_block=2, db_block=64, group=24), {}):  # partial groups and blocks; defaults
    d, i = hamming.knn_cpu(qw, dbw, 45, **blocks)
    np.testing.assert_array_equal(d, ref_d)
    np.testing.assert_array_equal(i, ref_i)
  if bits > 32:  # random codes cannot collide with db[3] at this length
    np.testing.assert_array_equal(i[0, :41], [3] + list(range(100, 140)))
  if bits in (33, 100):  # JAX path: one jit per shape, keep it to two sizes
    np.testing.assert_array_equal(np.asarray(hamming.hamming_distances(qw, dbw)), full)
    d, i = hamming.knn(qw, dbw, 45, chunk=128)  # 600 = 4 full chunks + a padded one
    np.testing.assert_array_equal(np.asarray(d), ref_d)
    np.testing.assert_array_equal(np.asarray(i), ref_i)


def test_knn_k_equals_n_and_bad_k():
  rng = np.random.default_rng(1)
  db = rng.integers(0, 2, (50, 20))
  q = rng.integers(0, 2, (3, 20))
  _, ref_d, ref_i = _reference(q, db, 50)
  d, i = hamming.knn_cpu(hamming.pack_bits(q), hamming.pack_bits(db), 50)
  np.testing.assert_array_equal(d, ref_d)
  np.testing.assert_array_equal(i, ref_i)
  with pytest.raises(ValueError):
    hamming.knn_cpu(hamming.pack_bits(q), hamming.pack_bits(db), 51)

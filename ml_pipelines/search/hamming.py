"""Binary codes packed into machine words, Hamming distances and exact Hamming k-NN.

Bit order (fixed, used by every module that reads packed codes): bit ``j`` of a ``bits``-bit code is
stored in word ``j // 32`` at bit position ``j % 32`` (least significant bit first); unused high bits
of the last word are zero.  A code given in {-1, +1} maps +1 -> 1, -1 -> 0; a code in {0, 1} is used as is
(any value > 0 is a one bit).

Two implementations of the exact k-NN ranking, both returning the ``k`` smallest distances with ties
broken by the smaller database index (the convention of ``evaluators.retrieval``):

* :func:`knn` -- XOR + popcount in JAX (jitted), scanning the database in chunks so that a
  million-code database never materialises a ``[Q, N, words]`` tensor; runs on the accelerator.
* :func:`knn_cpu` -- a compiled (numba) CPU scan over 64-bit words with a running distance threshold:
  a per-query histogram of accepted distances lowers the threshold as soon as ``k`` items lie strictly
  below it.  Distances are computed in vectorised groups over a word-major copy of the database, and
  only a group whose minimum is within the threshold is looked at item by item, so nearly every
  database item costs one XOR and one popcount per 64-bit word, a few SIMD lanes wide.

The search over hash tables (multi-index hashing, Norouzi et al., CVPR 2012) is in ``multi_index``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numba
import numpy as np
from numba import prange
from numba.extending import intrinsic

WORD_BITS = 32


def num_words(bits: int) -> int:
  return -(-bits // WORD_BITS)


def pack_bits(codes) -> np.ndarray:
  """Packs codes ``[N, bits]`` ({-1,+1} or {0,1}) into ``uint32`` words ``[N, ceil(bits / 32)]``."""
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ValueError(f"codes must be [N, bits], got shape {codes.shape}")
  n, bits = codes.shape
  words = num_words(bits)
  ones = np.zeros((n, words * WORD_BITS), dtype=np.uint8)
  ones[:, :bits] = codes > 0
  packed = np.packbits(ones.reshape(n, words, 4, 8), axis=-1, bitorder="little")  # [N, W, 4] bytes
  return np.ascontiguousarray(packed.reshape(n, words, 4)).view("<u4").reshape(n, words).astype(np.uint32)


def unpack_bits(words, bits: int) -> np.ndarray:
  """Inverse of :func:`pack_bits`: ``uint32 [N, W]`` -> {0,1} ``uint8 [N, bits]``."""
  words = np.ascontiguousarray(np.asarray(words, dtype=np.uint32))
  n = words.shape[0]
  as_bytes = words.astype("<u4").view(np.uint8).reshape(n, -1)
  return np.unpackbits(as_bytes, axis=-1, bitorder="little")[:, :bits]


@jax.jit
def hamming_distances(q_words, db_words):
  """All-pairs Hamming distances ``int32 [Q, N]`` of packed codes (XOR + popcount)."""
  x = jnp.bitwise_xor(q_words[:, None, :], db_words[None, :, :])
  return jnp.sum(jax.lax.population_count(x).astype(jnp.int32), axis=-1)


def knn(q_words, db_words, k: int, chunk: int = 16384):
  """Exact Hamming k-NN in JAX: ``(dist int32 [Q, k], idx int32 [Q, k])``, ties by smaller index.

  The database is scanned in chunks of ``chunk`` codes; each chunk's ``k`` best (``lax.top_k`` keeps
  the lower index first among equal values) are merged with the running best, which always holds
  smaller indices, so ties stay ordered by index.  Memory is ``O(Q * chunk * words)``.
  """
  q_words = jnp.asarray(q_words, dtype=jnp.uint32)
  db_words = jnp.asarray(db_words, dtype=jnp.uint32)
  n = db_words.shape[0]
  if not 0 < k <= n:
    raise ValueError(f"k={k} must be in [1, N={n}]")
  chunk = max(min(chunk, n), k)
  return _knn_scan(q_words, db_words, k, chunk)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _knn_scan(q_words, db_words, k, chunk):
  n, words = db_words.shape
  num_chunks = -(-n // chunk)
  pad = num_chunks * chunk - n
  db = jnp.pad(db_words, ((0, pad), (0, 0))).reshape(num_chunks, chunk, words)
  worst = jnp.iinfo(jnp.int32).max
  q = q_words.shape[0]

  def step(carry, xs):
    best_d, best_i = carry
    block, c = xs
    d = hamming_distances(q_words, block)
    idx = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
    d = jnp.where(idx[None, :] < n, d, worst)
    neg, pos = jax.lax.top_k(-d, k)
    cand_d = jnp.concatenate([best_d, -neg], axis=1)
    cand_i = jnp.concatenate([best_i, idx[pos]], axis=1)
    neg, pos = jax.lax.top_k(-cand_d, k)
    return (-neg, jnp.take_along_axis(cand_i, pos, axis=1)), None

  init = (jnp.full((q, k), worst, jnp.int32), jnp.full((q, k), -1, jnp.int32))
  (best_d, best_i), _ = jax.lax.scan(step, init, (db, jnp.arange(num_chunks, dtype=jnp.int32)))
  return best_d, best_i


# ----------------------------------------------------------------------------------------------------
# CPU path (numba).


@intrinsic
def _popcount64(typingctx, x):
  """LLVM ``ctpop`` on a uint64 (compiles to the POPCNT instruction where available)."""
  sig = numba.types.uint64(numba.types.uint64)

  def codegen(context, builder, signature, args):
    return builder.ctpop(args[0])

  return sig, codegen


def to_words64(words) -> np.ndarray:
  """``uint32 [N, W]`` -> ``uint64 [N, ceil(W / 2)]`` (same bit order: word 2i is the low half)."""
  words = np.asarray(words, dtype=np.uint32)
  if words.shape[1] % 2:
    words = np.concatenate([words, np.zeros((words.shape[0], 1), np.uint32)], axis=1)
  return np.ascontiguousarray(words).view("<u8").astype(np.uint64)


@numba.njit(cache=True, inline="always")
def _dist64(a, i, b, j, w64):
  d = 0
  for w in range(w64):
    d += _popcount64(a[i, w] ^ b[j, w])
  return d


@numba.njit(cache=True, inline="always")
def _group_distances(q64, qi, cols, g0, g1, dist):
  """``dist[:g1 - g0]`` = distances of query ``qi`` to database items ``g0 .. g1 - 1``; returns their min.

  ``cols`` is word-major (``[W64, N]``), so every loop below runs over contiguous memory and LLVM
  vectorises it (VPOPCNTQ where the CPU has it).  One and two words (codes of up to 128 bits) have
  their own single-pass loops.
  """
  w64 = cols.shape[0]
  a0 = q64[qi, 0]
  c0 = cols[0]
  mn = np.int32(64 * w64 + 1)
  if w64 == 1:
    for jj in range(g1 - g0):
      d = np.int32(_popcount64(a0 ^ c0[g0 + jj]))
      dist[jj] = d
      mn = min(mn, d)
  elif w64 == 2:
    a1 = q64[qi, 1]
    c1 = cols[1]
    for jj in range(g1 - g0):
      d = np.int32(_popcount64(a0 ^ c0[g0 + jj]) + _popcount64(a1 ^ c1[g0 + jj]))
      dist[jj] = d
      mn = min(mn, d)
  else:
    for jj in range(g1 - g0):
      dist[jj] = np.int32(_popcount64(a0 ^ c0[g0 + jj]))
    for w in range(1, w64):
      a = q64[qi, w]
      c = cols[w]
      for jj in range(g1 - g0):
        dist[jj] += np.int32(_popcount64(a ^ c[g0 + jj]))
    for jj in range(g1 - g0):
      mn = min(mn, dist[jj])
  return mn


@numba.njit(cache=True, inline="always")
def _accept(r, d, j, t, k, below, hist, buf_d, buf_i, fill):
  """Offer item ``j`` at distance ``d <= t`` to query row ``r``; returns the (possibly lower) threshold."""
  if d == t and below[r] + hist[r, t] >= k:
    return t
  cap = buf_d.shape[1]
  if fill[r] == cap:  # compact: keep d < t and the accepted items at d == t
    m = 0
    for c in range(cap):
      if buf_d[r, c] <= t:
        buf_d[r, m] = buf_d[r, c]
        buf_i[r, m] = buf_i[r, c]
        m += 1
    fill[r] = m
  buf_d[r, fill[r]] = d
  buf_i[r, fill[r]] = j
  fill[r] += 1
  hist[r, d] += 1
  if d < t:
    below[r] += 1
    while below[r] >= k:  # k items lie below t: nothing at distance t is needed any more
      t -= 1
      below[r] -= hist[r, t]
  return t


@numba.njit(parallel=True, cache=True)
def _knn_cpu_kernel(q64, cols, k, q_block, db_block, group):
  nq = q64.shape[0]
  w64, n = cols.shape
  max_dist = 64 * w64
  out_d = np.empty((nq, k), np.int32)
  out_i = np.empty((nq, k), np.int32)
  num_qb = (nq + q_block - 1) // q_block
  for qb in prange(num_qb):
    q0 = qb * q_block
    q1 = min(nq, q0 + q_block)
    nb = q1 - q0
    thresh = np.full(nb, max_dist, np.int64)   # items with d > thresh are never needed
    below = np.zeros(nb, np.int64)             # accepted items with d < thresh
    hist = np.zeros((nb, max_dist + 2), np.int64)
    buf_d = np.empty((nb, 4 * k + 64), np.int32)
    buf_i = np.empty((nb, 4 * k + 64), np.int32)
    fill = np.zeros(nb, np.int64)
    dist = np.empty(group, np.int32)
    for b0 in range(0, n, db_block):  # this slice of the database stays in cache for nb queries
      b1 = min(n, b0 + db_block)
      for r in range(nb):
        t = thresh[r]
        for g0 in range(b0, b1, group):
          g1 = min(b1, g0 + group)
          if _group_distances(q64, q0 + r, cols, g0, g1, dist) > t:
            continue  # the common case once the threshold has settled: no branch per item
          for jj in range(g1 - g0):
            if dist[jj] <= t:
              t = _accept(r, dist[jj], g0 + jj, t, k, below, hist, buf_d, buf_i, fill)
        thresh[r] = t
    for r in range(nb):
      # Stable counting sort of the buffer by distance (buffer is in increasing index order).
      t = thresh[r]
      pos = 0
      for dd in range(t + 1):
        for c in range(fill[r]):
          if buf_d[r, c] == dd and pos < k:
            out_d[q0 + r, pos] = dd
            out_i[q0 + r, pos] = buf_i[r, c]
            pos += 1
        if pos == k:
          break
  return out_d, out_i


def knn_cpu(q_words, db_words, k: int, q_block: int = 32, db_block: int = 4096, group: int = 256):
  """Exact Hamming k-NN on the CPU (numba, parallel over query blocks): ``(dist [Q, k], idx [Q, k])``.

  Same result as :func:`knn` (ties by smaller index).  The database is laid out word-major; each
  ``db_block`` slice of it serves ``q_block`` queries while it is in cache, and distances are computed
  ``group`` items at a time with their minimum, so a group with nothing under the query's running
  threshold costs no per-item branch.  Threads: ``numba.set_num_threads``.
  """
  q64 = to_words64(q_words)
  db64 = to_words64(db_words)
  n = db64.shape[0]
  if not 0 < k <= n:
    raise ValueError(f"k={k} must be in [1, N={n}]")
  if min(q_block, db_block, group) < 1:
    raise ValueError(f"q_block={q_block}, db_block={db_block}, group={group} must be >= 1")
  return _knn_cpu_kernel(q64, np.ascontiguousarray(db64.T), k, q_block, db_block, group)


@numba.njit(parallel=True, cache=True)
def _distances_cpu_kernel(q64, db64):
  nq = q64.shape[0]
  n, w64 = db64.shape
  out = np.empty((nq, n), np.int32)
  for i in prange(nq):
    for j in range(n):
      out[i, j] = _dist64(q64, i, db64, j, w64)
  return out


def hamming_distances_cpu(q_words, db_words) -> np.ndarray:
  """All-pairs Hamming distances ``int32 [Q, N]`` on the CPU (numba)."""
  return _distances_cpu_kernel(to_words64(q_words), to_words64(db_words))

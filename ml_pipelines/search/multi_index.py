"""Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing", CVPR 2012; official code norouzi/mih), exact k-NN and exact radius search.

A ``bits``-bit code is cut into ``m`` disjoint substrings; substring ``j`` has its own hash table
mapping a substring value to the ids of the database codes that carry it.  Pigeonhole rule (paper
Prop. 1 and its refinement in Sec. 4): if ``d(q, x) <= s * m + a`` (``0 <= a < m``) then either one of
the first ``a + 1`` substrings is within distance ``s`` of the query's, or one of the others is within
``s - 1``.  Hence

* radius search ``r = s * m + a``: probe tables ``0..a`` at substring radii ``0..s`` and tables
  ``a+1..m-1`` at ``0..s-1``, compute the full distance of every id found, keep ``d <= r``;
* k-NN: for ``s = 0, 1, ...`` and table ``j = 0..m-1`` probe table ``j`` at substring radius exactly
  ``s``; after that every item with ``d <= s * m + j`` has been seen, so the search stops as soon as
  ``k`` seen items lie within that certified radius.  Ties at the k-th distance are all seen, so the
  result equals the brute-force ranking with ties broken by the smaller index.

Substrings follow the official split (``b = ceil(bits / m)``; the first ``bits - m (b - 1)`` substrings
have ``b`` bits, the rest ``b - 1``), or are given explicitly as blocks: DMIH (arXiv 1905.10980) builds
one table per code block of its multi-branch network, ``MultiIndex.build(..., block_bits=[...])``.
The rule above only needs the substring distances to add up to the full distance, so unequal blocks are
exact too.  ``m = 1`` is the plain hash-bucket search within a Hamming radius.  Every query also reports
the number of buckets it probed (hash-table lookups, empty or not).

Tables are sorted arrays: the distinct substring values of table ``j`` (binary-searched) and, per value,
a contiguous run of ids.  Substrings are limited to 62 bits.  Bit order is that of ``hamming.pack_bits``.
"""
from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np
from numba import prange

from ml_pipelines.search import hamming
MAX_SUBSTRING_BITS = 62


def split_bits(bits: int, m: int) -> list[int]:
  """Substring lengths of the official split: ``bits - m (b - 1)`` of ``b = ceil(bits / m)``, rest ``b - 1``."""
  if not 1 <= m <= bits:
    raise ValueError(f"need 1 <= m <= bits, got m={m}, bits={bits}")
  b = -(-bits // m)
  n_long = bits - m * (b - 1)
  return [b] * n_long + [b - 1] * (m - n_long)


def default_m(bits: int, n: int) -> int:
  """``m ~ bits / log2(N)`` (paper Sec. 4.2), at least 1 and with substrings of at most 62 bits."""
  m = max(1, round(bits / max(1.0, math.log2(max(n, 2)))))
  return max(m, -(-bits // MAX_SUBSTRING_BITS))


@numba.njit(cache=True, inline="always")
def _substring(w64, i, lo, length):
  """Bits ``[lo, lo + length)`` of row ``i`` of ``uint64`` words, as an int64 (bit lo -> bit 0)."""
  w = lo // 64
  off = lo % 64
  v = w64[i, w] >> np.uint64(off)
  if off + length > 64:
    v |= w64[i, w + 1] << np.uint64(64 - off)
  mask = (np.uint64(1) << np.uint64(length)) - np.uint64(1)
  return np.int64(v & mask)


@numba.njit(parallel=True, cache=True)
def _substrings(w64, bounds):
  n = w64.shape[0]
  m = bounds.shape[0] - 1
  out = np.empty((m, n), np.int64)
  for i in prange(n):
    for j in range(m):
      out[j, i] = _substring(w64, i, bounds[j], bounds[j + 1] - bounds[j])
  return out


@dataclasses.dataclass(frozen=True)
class MultiIndex:
  """Hash tables over substrings of packed codes.  Build with :meth:`build`.

  Attributes: ``words`` uint32 [N, W] database codes; ``bits``; ``bounds`` int64 [m+1] substring bit
  offsets; ``keys`` int64 [K] distinct substring values, table ``j`` in ``keys[key_lo[j]:key_lo[j+1]]``
  (sorted); ``starts`` int64 [K+1] and ``ids`` int32 [m*N]: the bucket of key ``g`` is
  ``ids[starts[g]:starts[g+1]]`` (ids in increasing order).
  """
  words: np.ndarray
  bits: int
  bounds: np.ndarray
  keys: np.ndarray
  key_lo: np.ndarray
  starts: np.ndarray
  ids: np.ndarray

  @property
  def m(self) -> int:
    return len(self.bounds) - 1

  @classmethod
  def build(cls, words, bits: int, m: int | None = None, block_bits=None) -> "MultiIndex":
    """Index ``words`` (``hamming.pack_bits`` output) with ``m`` substrings or explicit ``block_bits``."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    n = words.shape[0]
    if block_bits is None:
      block_bits = split_bits(bits, default_m(bits, n) if m is None else m)
    elif m is not None and m != len(block_bits):
      raise ValueError("give m or block_bits, not both")
    block_bits = [int(b) for b in block_bits]
    if sum(block_bits) != bits or min(block_bits) < 1 or max(block_bits) > MAX_SUBSTRING_BITS:
      raise ValueError(f"blocks {block_bits} must be 1..{MAX_SUBSTRING_BITS} bits and sum to {bits}")
    bounds = np.concatenate([[0], np.cumsum(block_bits)]).astype(np.int64)
    subs = _substrings(hamming.to_words64(words), bounds)
    keys, key_lo, starts, ids = [], [0], [], []
    for j in range(len(block_bits)):
      order = np.argsort(subs[j], kind="stable").astype(np.int32)
      uniq, first = np.unique(subs[j][order], return_index=True)
      keys.append(uniq)
      starts.append(first + j * n)
      ids.append(order)
      key_lo.append(key_lo[-1] + len(uniq))
    starts.append([len(block_bits) * n])
    return cls(words=words, bits=bits, bounds=bounds, keys=np.concatenate(keys).astype(np.int64),
               key_lo=np.asarray(key_lo, np.int64), starts=np.concatenate(starts).astype(np.int64),
               ids=np.concatenate(ids))

  def _args(self):
    return (hamming.to_words64(self.words), self.bounds, self.keys, self.key_lo, self.starts, self.ids)

  def knn(self, q_words, k: int):
    """Exact k-NN: ``(dist int32 [Q, k], idx int32 [Q, k], buckets int64 [Q])``, ties by smaller index."""
    n = self.words.shape[0]
    if not 0 < k <= n:
      raise ValueError(f"k={k} must be in [1, N={n}]")
    q64 = hamming.to_words64(q_words)
    return _knn_kernel(q64, *self._args(), k, numba.get_num_threads())

  def radius_search(self, q_words, radius: int):
    """Exact radius search: every id with ``d <= radius``, sorted by (distance, id).

    Returns ``(offsets int64 [Q+1], idx int32 [T], dist int32 [T], buckets int64 [Q])``; the results of
    query ``i`` are ``idx[offsets[i]:offsets[i+1]]``.
    """
    if radius < 0:
      raise ValueError("radius must be >= 0")
    q64 = hamming.to_words64(q_words)
    return _radius_kernel(q64, *self._args(), radius)

  def save(self, path) -> None:
    np.savez(path, **{f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)})

  @classmethod
  def load(cls, path) -> "MultiIndex":
    with np.load(path) as z:
      fields = {f.name: z[f.name] for f in dataclasses.fields(cls)}
    fields["bits"] = int(fields["bits"])
    return cls(**fields)


@numba.njit(cache=True, inline="always")
def _lookup(keys, lo, hi, v):
  """Index of ``v`` in the sorted ``keys[lo:hi]``, or -1."""
  end = hi
  while lo < hi:
    mid = (lo + hi) >> 1
    if keys[mid] < v:
      lo = mid + 1
    else:
      hi = mid
  if lo < end and keys[lo] == v:
    return lo
  return -1


@numba.njit(cache=True, inline="always")
def _next_mask(x):
  """Gosper's hack: the next larger integer with the same number of set bits."""
  c = x & -x
  r = x + c
  return (((r ^ x) >> 2) // c) | r


@numba.njit(cache=True)
def _probe(qi, q64, db64, qsub, j, s, length, keys, klo, khi, starts, ids, stamp, stamp_val,
           buf_d, buf_i, fill, hist):
  """Probes table ``j`` at substring distance exactly ``s``; appends unseen ids. Returns (buffers, fill, probes)."""
  if s > length:
    return buf_d, buf_i, fill, 0
  w64 = db64.shape[1]
  limit = np.int64(1) << length
  mask = (np.int64(1) << s) - 1
  probes = 0
  while mask < limit:
    probes += 1
    g = _lookup(keys, klo, khi, qsub ^ mask)
    if g >= 0:
      for p in range(starts[g], starts[g + 1]):
        x = ids[p]
        if stamp[x] != stamp_val:
          stamp[x] = stamp_val
          d = 0
          for w in range(w64):
            d += hamming._popcount64(q64[qi, w] ^ db64[x, w])
          if fill == buf_d.shape[0]:
            nd = np.empty(2 * fill, np.int32)
            ni = np.empty(2 * fill, np.int32)
            nd[:fill] = buf_d
            ni[:fill] = buf_i
            buf_d, buf_i = nd, ni
          buf_d[fill] = d
          buf_i[fill] = x
          fill += 1
          hist[d] += 1
    if s == 0:
      break
    mask = _next_mask(mask)
  return buf_d, buf_i, fill, probes


@numba.njit(cache=True)
def _sorted_within(buf_d, buf_i, fill, radius, n):
  """Items of the buffer with ``d <= radius`` sorted by (d, id)."""
  cnt = 0
  for c in range(fill):
    if buf_d[c] <= radius:
      cnt += 1
  key = np.empty(cnt, np.int64)
  t = 0
  for c in range(fill):
    if buf_d[c] <= radius:
      key[t] = np.int64(buf_d[c]) * n + buf_i[c]
      t += 1
  key = np.sort(key)
  return (key // n).astype(np.int32), (key % n).astype(np.int32)


@numba.njit(parallel=True, cache=True)
def _knn_kernel(q64, db64, bounds, keys, key_lo, starts, ids, k, num_chunks):
  nq = q64.shape[0]
  n, w64 = db64.shape
  m = bounds.shape[0] - 1
  max_len = 0
  for j in range(m):
    max_len = max(max_len, bounds[j + 1] - bounds[j])
  out_d = np.empty((nq, k), np.int32)
  out_i = np.empty((nq, k), np.int32)
  buckets = np.zeros(nq, np.int64)
  per = (nq + num_chunks - 1) // num_chunks
  for ch in prange(num_chunks):
    stamp = np.full(n, -1, np.int32)
    hist = np.zeros(64 * w64 + 1, np.int64)
    qsub = np.empty(m, np.int64)
    buf_d = np.empty(4 * k, np.int32)
    buf_i = np.empty(4 * k, np.int32)
    for qi in range(ch * per, min(nq, (ch + 1) * per)):
      hist[:] = 0
      for j in range(m):
        qsub[j] = _substring(q64, qi, bounds[j], bounds[j + 1] - bounds[j])
      fill = 0
      certified = -1
      done = False
      for s in range(max_len + 1):
        for j in range(m):
          buf_d, buf_i, fill, p = _probe(qi, q64, db64, qsub[j], j, s, bounds[j + 1] - bounds[j], keys,
                                         key_lo[j], key_lo[j + 1], starts, ids, stamp, qi, buf_d, buf_i,
                                         fill, hist)
          buckets[qi] += p
          certified = s * m + j
          found = 0
          for d in range(min(certified, hist.shape[0] - 1) + 1):
            found += hist[d]
          if found >= k:
            done = True
            break
        if done:
          break
      d_sorted, i_sorted = _sorted_within(buf_d, buf_i, fill, certified, n)
      out_d[qi] = d_sorted[:k]
      out_i[qi] = i_sorted[:k]
  return out_d, out_i, buckets


@numba.njit(cache=True)
def _radius_kernel(q64, db64, bounds, keys, key_lo, starts, ids, radius):
  nq = q64.shape[0]
  n, w64 = db64.shape
  m = bounds.shape[0] - 1
  s_max = radius // m
  a = radius % m
  stamp = np.full(n, -1, np.int32)
  hist = np.zeros(64 * w64 + 1, np.int64)
  qsub = np.empty(m, np.int64)
  buf_d = np.empty(1024, np.int32)
  buf_i = np.empty(1024, np.int32)
  offsets = np.zeros(nq + 1, np.int64)
  res_d = np.empty(1024, np.int32)
  res_i = np.empty(1024, np.int32)
  buckets = np.zeros(nq, np.int64)
  for qi in range(nq):
    for j in range(m):
      qsub[j] = _substring(q64, qi, bounds[j], bounds[j + 1] - bounds[j])
    fill = 0
    for j in range(m):
      top = s_max if j <= a else s_max - 1
      for s in range(top + 1):
        buf_d, buf_i, fill, p = _probe(qi, q64, db64, qsub[j], j, s, bounds[j + 1] - bounds[j], keys,
                                       key_lo[j], key_lo[j + 1], starts, ids, stamp, qi, buf_d, buf_i,
                                       fill, hist)
        buckets[qi] += p
    d_sorted, i_sorted = _sorted_within(buf_d, buf_i, fill, radius, n)
    t0 = offsets[qi]
    t1 = t0 + d_sorted.shape[0]
    if t1 > res_d.shape[0]:
      size = max(t1, 2 * res_d.shape[0])
      nd = np.empty(size, np.int32)
      ni = np.empty(size, np.int32)
      nd[:t0] = res_d[:t0]
      ni[:t0] = res_i[:t0]
      res_d, res_i = nd, ni
    res_d[t0:t1] = d_sorted
    res_i[t0:t1] = i_sorted
    offsets[qi + 1] = t1
  total = offsets[nq]
  return offsets, res_i[:total].copy(), res_d[:total].copy(), buckets

"""Exact Hamming k-NN search: ours (numba CPU scan, multi-index hashing, JAX ranking) against faiss-cpu.

Protocol (issue 6): k = 100 nearest neighbours of 1,000 queries in 1,000,000 database codes of 64 and
128 bits; uniform random codes, and clustered codes (1,000 random centres, each bit flipped with
probability 0.05; queries drawn the same way).  faiss ``IndexBinaryFlat`` (exact) gives the reference
distances; ``IndexBinaryMultiHash`` (nflip 0, 1, 2) is approximate, so its "exact rows" column is the
share of queries whose 100 distances equal the exact ones.  Ours must match the reference distances
exactly in every row.  The JAX ranking runs on the default JAX backend (on a CPU-only machine it runs
on the CPU with fewer queries, see --jax-queries).

  python benchmarks/hash_search.py [--n=1000000] [--queries=1000] [--threads=2] [--jax-queries=1000]
      [--mih-random-queries=100] [--repeats=2]
"""
from __future__ import annotations

import argparse
import os
import time

import faiss
import jax
import numba
import numpy as np

from ml_pipelines.search import hamming
from ml_pipelines.search.multi_index import MultiIndex


def make_codes(kind, n, nq, bits, rng):
  if kind == "random":
    return rng.integers(0, 2, (n, bits), dtype=np.uint8), rng.integers(0, 2, (nq, bits), dtype=np.uint8)
  centres = rng.integers(0, 2, (1000, bits), dtype=np.uint8)

  def draw(count):
    return centres[rng.integers(0, 1000, count)] ^ (rng.random((count, bits)) < 0.05).astype(np.uint8)

  return draw(n), draw(nq)


def timed(fn, repeats=1):
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=1_000_000)
  parser.add_argument("--queries", type=int, default=1000)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--jax-queries", type=int, default=1000)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--mih-random-queries", type=int, default=100,
                      help="queries for multi-index search on random codes (its worst case, slow)")
  args = parser.parse_args()
  faiss.omp_set_num_threads(args.threads)
  numba.set_num_threads(args.threads)
  print(f"faiss {faiss.__version__}, numba {numba.__version__}, jax {jax.__version__} "
        f"backend={jax.default_backend()} ({jax.devices()[0].device_kind}), threads={args.threads}, "
        f"load average at start {os.getloadavg()[0]:.2f}")
  rows = []
  rng = np.random.default_rng(0)
  for bits in (64, 128):
    m = {64: 4, 128: 8}[bits]
    for kind in ("random", "clustered"):
      db, q = make_codes(kind, args.n, args.queries, bits, rng)
      db_bytes, q_bytes = np.packbits(db, axis=1), np.packbits(q, axis=1)
      db_words, q_words = hamming.pack_bits(db), hamming.pack_bits(q)

      def add(method, seconds, dist, nq=args.queries, note=""):
        ref = ref_d[:nq]
        exact = float((np.asarray(dist) == ref).all(axis=1).mean())
        rows.append((bits, kind, method, nq / seconds, exact, note))
        print(f"  {bits:4d} {kind:9s} {method:34s} {nq / seconds:10.1f} q/s  exact rows {100 * exact:6.2f}% {note}",
              flush=True)

      flat = faiss.IndexBinaryFlat(bits)
      flat.add(db_bytes)
      seconds, (ref_d, _) = timed(lambda: flat.search(q_bytes, args.k), args.repeats)
      add("faiss IndexBinaryFlat", seconds, ref_d)
      mh = faiss.IndexBinaryMultiHash(bits, m, bits // m)
      mh.add(db_bytes)
      for nflip in (0, 1, 2):
        mh.nflip = nflip
        seconds, (d, _) = timed(lambda: mh.search(q_bytes, args.k), args.repeats)
        d = np.where(d < 0, 1 << 30, d)  # rows with fewer than k results are padded with -1
        add(f"faiss IndexBinaryMultiHash nflip={nflip}", seconds, d)
      del mh, flat

      hamming.knn_cpu(q_words[:4], db_words[:4096], args.k)  # compile
      seconds, (d, scan_i) = timed(lambda: hamming.knn_cpu(q_words, db_words, args.k), args.repeats)
      add("ours exact scan (numba CPU)", seconds, d)

      start = time.perf_counter()
      index = MultiIndex.build(db_words, bits, m=m)
      build_s = time.perf_counter() - start
      index.knn(q_words[:2], args.k)  # compile
      nm = min(args.mih_random_queries, args.queries) if kind == "random" else args.queries
      seconds, (d, mih_i, buckets) = timed(lambda: index.knn(q_words[:nm], args.k), args.repeats)
      same = bool((mih_i == scan_i[:nm]).all())
      add(f"ours multi-index m={m} (numba CPU)", seconds, d, nq=nm,
          note=f"build {build_s:.1f}s, {buckets.mean():.0f} buckets/query, same ids as scan: {same}")
      del index

      nj = min(args.jax_queries, args.queries)
      jax.block_until_ready(hamming.knn(q_words[:nj], db_words, args.k))  # compile
      seconds, (d, jax_i) = timed(lambda: jax.block_until_ready(hamming.knn(q_words[:nj], db_words, args.k)),
                                  args.repeats)
      same = bool((np.asarray(jax_i) == scan_i[:nj]).all())
      add(f"ours JAX ranking ({jax.default_backend()})", seconds, d, nq=nj, note=f"same ids as scan: {same}")

  print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
  print("| bits | codes | method | queries/s | exact rows | note |")
  print("|---:|---|---|---:|---:|---|")
  for bits, kind, method, qps, exact, note in rows:
    print(f"| {bits} | {kind} | {method} | {qps:.0f} | {100 * exact:.1f}% | {note} |")


if __name__ == "__main__":
  main()

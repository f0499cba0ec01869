"""Build a multi-index hash table from codes saved by a trained model, and query it.

Codes file: an ``.npz`` with ``codes`` ``[N, bits]`` in {-1,+1} or {0,1} (the sign of a hashing model's
output) and optionally ``labels`` (multi-hot ``[N, L]`` or class ids ``[N]``). Every evaluation of a
hashing run writes both files of its newest model into ``WORKDIR/codes/`` (the learned database
codes V and the query split's codes), so a trained run is indexed and queried with

  python -m ml_pipelines.search.hash_index build --codes=WORKDIR/codes/database.npz --index=db_index.npz
  python -m ml_pipelines.search.hash_index query --index=db_index.npz --codes=WORKDIR/codes/queries.npz

  python -m ml_pipelines.search.hash_index build --codes=db.npz --index=db_index.npz [--m=4 | --blocks=16,16,32]
  python -m ml_pipelines.search.hash_index query --index=db_index.npz --codes=queries.npz --k=100 \
      [--radius=2] [--out=results.npz]

``query`` prints queries/s and buckets probed per query, checks the first queries against a linear
scan, and, when both files carry labels, prints mAP@k and precision/recall within ``--radius``.
Database labels are stored in the index.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ml_pipelines.search import hamming
from ml_pipelines.evaluators import retrieval as retrieval_metrics
from ml_pipelines.search.multi_index import MultiIndex


class CodesFileError(ValueError):
  """A codes file that cannot be indexed or queried; the command prints it in one line."""


def load_codes(path) -> tuple[np.ndarray, np.ndarray | None]:
  """(codes [N, bits], labels or None) of an .npz, N >= 1, codes in {-1,+1} or {0,1} (a 0 is a
  bit off, as sign() gives); anything else raises CodesFileError saying what is wrong."""
  path = str(path)
  try:
    if os.path.getsize(path) == 0:
      raise CodesFileError(f"{path} is empty (0 bytes); expected an .npz with a 'codes' array.")
    with np.load(path, allow_pickle=False) as z:
      if not hasattr(z, "files"):
        raise CodesFileError(f"{path} is a single .npy array, not an .npz with a 'codes' array.")
      if "codes" not in z.files:
        raise CodesFileError(f"{path} has no 'codes' array (it holds: "
                             f"{', '.join(z.files) or 'nothing'}).")
      codes = z["codes"]
      labels = z["labels"] if "labels" in z.files else None
  except (OSError, EOFError, ValueError) as e:
    if isinstance(e, CodesFileError):
      raise
    reason = "it does not exist" if isinstance(e, FileNotFoundError) else f"{type(e).__name__}: {e}"
    raise CodesFileError(f"{path} cannot be read as .npz ({reason}).") from None
  if codes.ndim != 2:
    raise CodesFileError(f"{path}: 'codes' must be [N, bits], got shape {codes.shape}.")
  if codes.shape[0] == 0 or codes.shape[1] == 0:
    raise CodesFileError(f"{path} holds no codes (shape {codes.shape}).")
  values = np.unique(codes)
  if not set(values.tolist()) <= {-1, 0, 1}:  # {-1,+1}, {0,1}, or sign() with zeros (bit off)
    shown = ", ".join(f"{v:g}" for v in values[:4])
    raise CodesFileError(f"{path}: codes must be binary, {{-1,+1}} or {{0,1}}; found values "
                         f"{shown}{', ...' if len(values) > 4 else ''} (take the sign of a "
                         f"model's real-valued outputs first).")
  return codes, labels


def build(codes_path, index_path, m=None, blocks=None) -> MultiIndex:
  codes, labels = load_codes(codes_path)
  index = MultiIndex.build(hamming.pack_bits(codes), codes.shape[1], m=m, block_bits=blocks)
  index.save(index_path)
  if labels is not None:
    with np.load(index_path) as z:
      fields = dict(z)
    np.savez(index_path, labels=labels, **fields)
  return index


def query(index_path, codes_path, k, radius=None, out=None) -> dict:
  try:
    index = MultiIndex.load(index_path)
  except (OSError, EOFError, ValueError, KeyError) as e:
    raise CodesFileError(f"{index_path} is not an index written by `hash_index build` "
                         f"({type(e).__name__}: {e}).") from None
  with np.load(index_path) as z:
    db_labels = z["labels"] if "labels" in z else None
  codes, q_labels = load_codes(codes_path)
  if codes.shape[1] != index.bits:
    raise CodesFileError(f"{codes_path}: queries have {codes.shape[1]} bits, the index "
                         f"{index.bits}.")
  q_words = hamming.pack_bits(codes)
  start = time.perf_counter()
  dist, idx, buckets = index.knn(q_words, k)
  seconds = time.perf_counter() - start
  check = min(len(q_words), 16)
  ref_d, _ = hamming.knn_cpu(q_words[:check], index.words, k)
  summary = {"queries": len(q_words), "queries_per_s": len(q_words) / seconds,
             "buckets_per_query": float(buckets.mean()), "exact_on_checked": bool((ref_d == dist[:check]).all())}
  saved = {"dist": dist, "idx": idx, "buckets": buckets}
  if radius is not None:
    offsets, r_idx, r_dist, r_buckets = index.radius_search(q_words, radius)
    summary["radius_buckets_per_query"] = float(r_buckets.mean())
    summary["radius_mean_results"] = float(np.diff(offsets).mean())
    saved.update(radius_offsets=offsets, radius_idx=r_idx, radius_dist=r_dist)
  if q_labels is not None and db_labels is not None:
    db_codes = hamming.unpack_bits(index.words, index.bits)
    summary[f"mAP@{k}"] = retrieval_metrics.mean_average_precision(codes, db_codes, q_labels, db_labels, topk=k)
    if radius is not None:
      p, r = retrieval_metrics.precision_recall_at_radius(codes, db_codes, q_labels, db_labels, radius)
      summary[f"precision@r={radius}"], summary[f"recall@r={radius}"] = p, r
  if out:
    np.savez(out, **saved)
  return summary


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser("build")
  b.add_argument("--codes", required=True)
  b.add_argument("--index", required=True)
  b.add_argument("--m", type=int, default=None, help="substrings (default bits / log2 N)")
  b.add_argument("--blocks", default=None, help="comma-separated block sizes (DMIH block-wise tables)")
  q = sub.add_parser("query")
  q.add_argument("--index", required=True)
  q.add_argument("--codes", required=True)
  q.add_argument("--k", type=int, default=100)
  q.add_argument("--radius", type=int, default=None)
  q.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  try:
    _run(args)
  except CodesFileError as e:
    parser.exit(1, f"error: {e}\n")


def _run(args) -> None:
  if args.command == "build":
    blocks = [int(x) for x in args.blocks.split(",")] if args.blocks else None
    index = build(args.codes, args.index, m=args.m, blocks=blocks)
    print(f"built {args.index}: {index.words.shape[0]} codes, {index.bits} bits, "
          f"{index.m} tables of {np.diff(index.bounds).tolist()} bits, {len(index.keys)} buckets")
  else:
    for key, value in query(args.index, args.codes, args.k, args.radius, args.out).items():
      print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
  main()

"""Statistics of ranked relevance lists, shared by the retrieval, re-ID and recommendation metrics.

A row of ``relevant [n, L]`` marks which items of one ranked list (best first) are relevant; an
optional ``keep [n, L]`` removes items from the list (re-ID's junk gallery images, a user's training
items) without re-sorting: the rank of a kept item is the number of kept items up to and including
it.

Average precision of one list: ``AP = (1 / H) sum_j j / rank_j`` over its H relevant kept items
(``rank_j`` the rank of the j-th), 0 when H = 0 (the non-interpolated AP of TREC /
information-retrieval practice; the same per-query formula as ADSH's ``calc_map``, SGIEL's
``eval_sysu`` and DPCML's ``Evaluator.map_mrr_auc_ndcg``).
"""
from __future__ import annotations

import numpy as np


def descending_order(scores: np.ndarray) -> np.ndarray:
  """Per row, the indices of ``scores`` from highest to lowest, ties by the smaller index."""
  return np.argsort(-np.asarray(scores), axis=-1, kind="stable")


def ranks_and_hits(relevant: np.ndarray, keep: np.ndarray | None = None):
  """``(rank, hits, relevant)``: the 1-based rank of each position in the kept list, the number of
  relevant kept items up to each position, and ``relevant & keep``, all ``[n, L]``."""
  relevant = np.asarray(relevant, dtype=bool)
  if keep is not None:
    relevant = relevant & keep
    rank = np.cumsum(keep, axis=-1)
  else:
    rank = np.broadcast_to(np.arange(1, relevant.shape[-1] + 1), relevant.shape)
  return rank, np.cumsum(relevant, axis=-1), relevant


def average_precision(relevant: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
  """AP ``[n]`` of each ranked list; see the module docstring."""
  rank, hits, relevant = ranks_and_hits(relevant, keep)
  found = hits[..., -1] if hits.shape[-1] else np.zeros(hits.shape[:-1], np.int64)
  total = np.where(relevant, hits / np.maximum(rank, 1), 0.0).sum(axis=-1)
  return np.where(found > 0, total / np.maximum(found, 1), 0.0)

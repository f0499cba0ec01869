"""Retrieval metrics for binary codes, with the conventions deep-hashing papers report.

Sources: ADSH (Jiang and Li, "Asymmetric Deep Supervised Hashing", AAAI 2018), official code
jiangqy/ADSH-AAAI2018, ``ADSH_pytorch/utils/calc_hr.py`` (``calc_map``, ``calc_topMap``: Hamming
ranking, AP per query, mean over all queries); the Hamming-ball lookup precision within radius 2 of
KSH (Liu et al., "Supervised Hashing with Kernels", CVPR 2012), with the recall that MCH (arXiv
2008.01503) reports next to it.

Common to all functions:
* codes ``[N, bits]`` in {-1,+1} or {0,1} (packed with ``hamming.pack_bits``);
* labels multi-hot ``[N, L]`` (a 1-D integer class vector is turned into one-hot); a database item
  is relevant to a query when they share at least one label;
* the ranking is by Hamming distance with ties broken by the smaller database index (a stable sort;
  the official ``np.argsort`` is quicksort, which orders tied items arbitrarily, so its mAP is not
  reproducible to the last digit when codes are short).

``mean_average_precision`` (mAP@K): AP of a query = mean of ``j / rank_j`` over the relevant items
found in its top K (``rank_j`` the rank of the j-th relevant one; ``ranked.average_precision``); a
query with no relevant item in its top K has AP 0 and still counts in the mean over all queries (as
``calc_topMap``, which skips it in the sum but divides by the number of queries).
``precision_recall_curve``: precision and recall at each cut-off of the full ranking, averaged over
the queries that have at least one relevant item.
``precision_recall_at_radius``: ball = database items within Hamming distance ``radius``;
precision = relevant in ball / ball size (an empty ball scores 0), recall = relevant in ball / all
relevant (0 for a query without relevant items); both averaged over all queries.
"""
from __future__ import annotations

import numpy as np

from ml_pipelines.evaluators import ranked
from ml_pipelines.search import hamming

_QUERY_CHUNK = 256


def _multi_hot(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim == 1:
    return np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
  return labels.astype(np.float32)


def _chunks(q_codes, db_codes, q_labels, db_labels):
  """Yields ``(dist [q, N], relevant bool [q, N])`` for chunks of queries."""
  q_words, db_words = hamming.pack_bits(q_codes), hamming.pack_bits(db_codes)
  q_labels, db_labels = _multi_hot(q_labels), _multi_hot(db_labels)
  if q_labels.shape[1] != db_labels.shape[1]:
    width = max(q_labels.shape[1], db_labels.shape[1])
    q_labels = np.pad(q_labels, ((0, 0), (0, width - q_labels.shape[1])))
    db_labels = np.pad(db_labels, ((0, 0), (0, width - db_labels.shape[1])))
  for s in range(0, len(q_words), _QUERY_CHUNK):
    dist = hamming.hamming_distances_cpu(q_words[s:s + _QUERY_CHUNK], db_words)
    yield dist, (q_labels[s:s + _QUERY_CHUNK] @ db_labels.T) > 0


def _ranked_relevance(dist, relevant, topk):
  order = np.argsort(dist, axis=1, kind="stable")[:, :topk]
  return np.take_along_axis(relevant, order, axis=1)


def mean_average_precision(q_codes, db_codes, q_labels, db_labels,
                           topk: int | None = None) -> float:
  """mAP@topk (``None``: the whole database) of Hamming ranking; see the module docstring."""
  aps = []
  for dist, relevant in _chunks(q_codes, db_codes, q_labels, db_labels):
    aps.append(ranked.average_precision(_ranked_relevance(dist, relevant, topk)))
  return float(np.concatenate(aps).mean())


def precision_recall_curve(q_codes, db_codes, q_labels, db_labels, num_points: int = 100):
  """Mean precision and recall at ``num_points`` cut-offs spread evenly over the full ranking.

  Returns ``(precision [P], recall [P], cutoffs [P])``; cut-off ``c`` means the top ``c`` items.
  """
  n = len(db_codes)
  cutoffs = np.unique(np.linspace(1, n, num_points).round().astype(np.int64))
  p_sum = np.zeros(len(cutoffs))
  r_sum = np.zeros(len(cutoffs))
  count = 0
  for dist, relevant in _chunks(q_codes, db_codes, q_labels, db_labels):
    rel = _ranked_relevance(dist, relevant, None)
    total = rel.sum(axis=1)
    keep = total > 0
    hits = np.cumsum(rel[keep], axis=1)[:, cutoffs - 1]
    p_sum += (hits / cutoffs).sum(axis=0)
    r_sum += (hits / total[keep, None]).sum(axis=0)
    count += int(keep.sum())
  count = max(count, 1)
  return p_sum / count, r_sum / count, cutoffs


def precision_recall_at_radius(q_codes, db_codes, q_labels, db_labels, radius: int = 2):
  """Mean precision and recall inside the Hamming ball ``d <= radius``: ``(precision, recall)``."""
  precision, recall = [], []
  for dist, relevant in _chunks(q_codes, db_codes, q_labels, db_labels):
    ball = dist <= radius
    size = ball.sum(axis=1)
    hit = (ball & relevant).sum(axis=1)
    total = relevant.sum(axis=1)
    precision.append(np.where(size > 0, hit / np.maximum(size, 1), 0.0))
    recall.append(np.where(total > 0, hit / np.maximum(total, 1), 0.0))
  return float(np.concatenate(precision).mean()), float(np.concatenate(recall).mean())


def plot_precision_recall(curves: dict, path) -> None:
  """Saves a PNG of precision-recall curves, ``curves = {label: (precision, recall)}``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 4))
  for label, (precision, recall) in curves.items():
    ax.plot(recall, precision, label=label)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

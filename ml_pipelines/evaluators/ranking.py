"""Top-k recommendation metrics of collaborative metric learning, per user then averaged over users.

The evaluator of CML (Hsieh et al., WWW 2017) as re-coded by DPCML (Bao et al., "The Minority
Matters: A Diversity-Promoting Collaborative Metric Learning Algorithm", NeurIPS 2022;
statusrank/DPCML ``evaluate.py``, class ``Evaluator``), reproduced exactly:
* each user's items are sorted by decreasing score (for CML, score = minus the distance; ties by the
  smaller item index), then the user's training items are removed from the list; ranks count the
  remaining items only;
* P@k = hits in the top k / k; R@k = hits in the top k / |test items|; NDCG@k = DCG@k / IDCG@k with
  ``DCG@k = sum_{hits at rank r <= k} 1 / log2(r + 1)`` and the ideal DCG over k positions,
  ``IDCG@k = sum_{r=1..k} 1 / log2(r + 1)``; these three average over the users with at least k
  test items (official ``precision_recall_ndcg_k``);
* over the whole filtered list (official ``map_mrr_auc_ndcg``), for users with at least
  ``min_test_items`` (3) test items: MAP = mean over hits of ``j / rank_j`` (0 without hits;
  ``ranked.average_precision``); MRR = 1 / rank of the first hit; NDCG with the ideal DCG over
  |test| positions; AUC by the rank sum
  ``(sum_{hits} rank_from_bottom - K (K + 1) / 2) / (K (L - K))``
  with K = |test items|, L = length of the filtered list, and AUC = 1 when L <= K.
The official code computes top-(k + max #train items) per user, then filters: the same as removing
the training items before ranking, which is what this code does.

Inputs: ``scores [U, N]`` (higher = recommended first), ``train_mask`` and ``test_mask`` ``[U, N]``
booleans (a user's training / held-out items); rows are the users to evaluate.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ml_pipelines.evaluators import ranked

_USER_CHUNK = 256


def _discount(rank):
  return 1.0 / np.log2(rank + 1.0)


def ranking_metrics(scores, train_mask, test_mask, ks: Sequence[int] = (3, 5),
                    min_test_items: int = 3) -> dict[str, float]:
  """``{"P@k", "R@k", "NDCG@k" for k in ks, "MAP", "MRR", "AUC", "NDCG"}`` (module docstring)."""
  scores, train_mask, test_mask = (np.asarray(a) for a in (scores, train_mask, test_mask))
  per_user = {name: [] for name in ("MAP", "MRR", "AUC", "NDCG")}
  per_user.update({f"{m}@{k}": [] for k in ks for m in ("P", "R", "NDCG")})
  for s in range(0, len(scores), _USER_CHUNK):
    order = ranked.descending_order(scores[s:s + _USER_CHUNK])
    keep = ~np.take_along_axis(train_mask[s:s + _USER_CHUNK], order, axis=1)
    num_test = test_mask[s:s + _USER_CHUNK].sum(axis=1)
    rank, hits, relevant = ranked.ranks_and_hits(
        np.take_along_axis(test_mask[s:s + _USER_CHUNK], order, axis=1), keep)
    gain = np.where(relevant, _discount(np.maximum(rank, 1)), 0.0)
    for k in ks:
      users = num_test >= k
      in_top = relevant & (rank <= k)
      count = in_top.sum(axis=1)[users]
      per_user[f"P@{k}"].append(count / k)
      per_user[f"R@{k}"].append(count / num_test[users])
      per_user[f"NDCG@{k}"].append(np.where(in_top, gain, 0.0).sum(axis=1)[users]
                                   / _discount(np.arange(1, k + 1)).sum())
    users = num_test >= min_test_items
    ideal = np.cumsum(_discount(np.arange(1, test_mask.shape[1] + 1)))[np.maximum(num_test, 1) - 1]
    length = keep.sum(axis=1)
    first = np.where(relevant, rank, np.iinfo(np.int64).max).min(axis=1)
    from_bottom = np.where(relevant, length[:, None] - rank + 1, 0).sum(axis=1)
    negatives = np.maximum(length - num_test, 1)
    auc = (from_bottom - num_test * (num_test + 1) / 2) / (np.maximum(num_test, 1) * negatives)
    per_user["MAP"].append(ranked.average_precision(relevant, keep)[users])
    per_user["MRR"].append(np.where(hits[:, -1] > 0, 1.0 / first, 0.0)[users])
    per_user["NDCG"].append((gain.sum(axis=1) / ideal)[users])
    per_user["AUC"].append(np.where(length <= num_test, 1.0, auc)[users])
  return {name: float(np.concatenate(values).mean()) for name, values in per_user.items()}

"""Outlier-detection ROC-AUC: the probability that a random outlier scores higher than a random
inlier, ties counting one half (the Mann-Whitney U statistic divided by ``n_outliers * n_inliers``).

``labels``: 1 for an outlier, 0 for an inlier; ``scores``: higher = more outlying. Equal to
``sklearn.metrics.roc_auc_score(labels, scores)`` (the area under the ROC curve with tied scores
forming one threshold), which RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD ``model.py``)
and multi-view outlier detection in general report; computed here from average ranks.
"""
from __future__ import annotations

import numpy as np


def average_ranks(values) -> np.ndarray:
  """1-based ranks in increasing order, tied values sharing the mean of their ranks."""
  values = np.asarray(values)
  order = np.argsort(values, kind="stable")
  sorted_values = values[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
  ends = np.r_[starts[1:], len(values)]
  ranks = np.empty(len(values))
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return ranks


def roc_auc(labels, scores) -> float:
  """ROC-AUC of ``scores`` for the binary ``labels`` (1 = outlier); needs both classes."""
  positive = np.asarray(labels).ravel() == 1
  num_pos, num_neg = int(positive.sum()), int((~positive).sum())
  if num_pos == 0 or num_neg == 0:
    raise ValueError("ROC-AUC needs at least one outlier and one inlier")
  rank_sum = average_ranks(np.asarray(scores).ravel())[positive].sum()
  return float((rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))

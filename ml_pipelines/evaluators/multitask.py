"""Metrics over several binary tasks with missing labels, as the OGB evaluators compute them (Hu et
al., "Open Graph Benchmark", NeurIPS 2020; snap-stanford/ogb `ogb/graphproppred/evaluate.py`,
`_eval_ap` and `_eval_rocauc`).

``y_true [N, T]``: 1 / 0 where task t was measured on example n, NaN where it was not; ``y_score
[N, T]``: higher = more likely positive (logits or probabilities: both metrics depend only on the
order). For each task with at least one positive and one negative among its labelled examples, the
metric of its labelled examples alone; the result is the unweighted mean over those tasks (a task
with one class only is left out, and none left is an error, as in OGB).

- ``average_precision_over_tasks``: non-interpolated average precision per task
  (``sklearn.metrics.average_precision_score``), OGB's metric for ogbg-molpcba;
- ``roc_auc_over_tasks``: ROC-AUC per task (``sklearn.metrics.roc_auc_score``), OGB's metric for
  ogbn-proteins and ogbg-molhiv; on one task ``[N, 1]`` it is the binary ROC-AUC the Yandex
  heterophily sets (minesweeper, tolokers, questions) report.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ml_pipelines.evaluators.multilabel import average_precision_per_class
from ml_pipelines.evaluators.outlier import roc_auc


def _over_tasks(y_true, y_score, metric: Callable, name: str) -> float:
  y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
  y_score = np.asarray(y_score, np.float64).reshape(y_true.shape)
  values = []
  for t in range(y_true.shape[1]):
    labelled = ~np.isnan(y_true[:, t])
    y, s = y_true[labelled, t], y_score[labelled, t]
    if np.any(y == 1) and np.any(y == 0):
      values.append(metric(y, s))
  if not values:
    raise ValueError(f"No task has both positive and negative labels: {name} is undefined.")
  return float(np.mean(values))


def average_precision_over_tasks(y_true, y_score) -> float:
  """Mean over tasks with both classes of the AP of each task's labelled examples."""
  return _over_tasks(y_true, y_score,
                     lambda y, s: average_precision_per_class(y[:, None], s[:, None])[0],
                     "average precision")


def roc_auc_over_tasks(y_true, y_score) -> float:
  """Mean over tasks with both classes of the ROC-AUC of each task's labelled examples."""
  return _over_tasks(y_true, y_score, roc_auc, "ROC-AUC")

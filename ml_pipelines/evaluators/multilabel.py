"""Multi-label classification mAP: mean over classes of the average precision of ranking the images
by that class's score.

``targets [N, C]``: 1 marks a positive; every other value (0, -1, and VOC's 0 = "difficult") is a
negative, as in the official PVP / TaI-DPT evaluator (TAI++ / PVP, IJCAI 2024, arXiv 2405.06926;
code Jinx630/Pseudo-Visual-Prompt,
``pvp_finetune/Dassl.pytorch-master/dassl/evaluation/evaluator.py``, ``average_precision`` and
``mAP``, which tests ``target == 1``). ``scores [N, C]``: higher = more likely positive (logits,
similarities or probabilities: AP depends only on the order).

Per class (default, non-interpolated, as the official code and ``sklearn.metrics.
average_precision_score``): sort by decreasing score; ``AP = sum_n (R_n - R_{n-1}) P_n`` over the
distinct score thresholds, i.e. the mean of the precision at the rank of each positive. Tied scores
form one threshold as in scikit-learn (the official code orders ties by ``argsort``, arbitrarily).

``eleven_point=True``: the PASCAL VOC2007 devkit's interpolated AP, ``AP = (1/11) sum_{t in {0, 0.1,
.., 1}} max_{R_n >= t} P_n`` (0 when no point reaches recall t) (Everingham et al., "The PASCAL
Visual Object Classes (VOC) Challenge", IJCV 2010). Note that the devkit leaves "difficult" objects
out, while here, as in the official PVP code, they count as negatives.

A class without positives has no AP (NaN in ``average_precision_per_class``) and is left out of the
mean; the official code would count it as 0 (``0 / (0 + eps)``), which never happens on the VOC2007,
COCO-2014 and NUS-WIDE test sets, where every class occurs. The official code reports ``100 * mAP``;
these functions return fractions.
"""
from __future__ import annotations

import numpy as np

_RECALL_LEVELS = np.linspace(0.0, 1.0, 11)


def precision_recall_points(positive, scores):
  """``(precision, recall)`` at each distinct score threshold, from the highest score down."""
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  sorted_scores = np.asarray(scores)[order]
  last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(order) - 1]  # end of each tie group
  tp = np.cumsum(np.asarray(positive, bool)[order])[last]
  return tp / (last + 1), tp / tp[-1]


def _average_precision(positive, scores, eleven_point: bool) -> float:
  if not np.any(positive):
    return np.nan
  precision, recall = precision_recall_points(positive, scores)
  if eleven_point:
    return float(np.mean([precision[recall >= t].max(initial=0.0) for t in _RECALL_LEVELS]))
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def average_precision_per_class(targets, scores, eleven_point: bool = False) -> np.ndarray:
  """AP of each class ``[C]`` (NaN for a class without positives)."""
  positive = np.asarray(targets) == 1
  scores = np.asarray(scores)
  return np.array([_average_precision(positive[:, c], scores[:, c], eleven_point)
                   for c in range(scores.shape[1])])


def mean_average_precision(targets, scores, eleven_point: bool = False) -> float:
  """Mean of the per-class AP over the classes that have positives."""
  return float(np.nanmean(average_precision_per_class(targets, scores, eleven_point)))

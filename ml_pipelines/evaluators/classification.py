"""Single-label classification metrics, from integer labels and predictions (or scores).

Definitions (the scikit-learn conventions, so numbers compare with papers that use it):
* ``accuracy`` = mean of ``predicted == labels`` (``sklearn.metrics.accuracy_score``);
* ``top_k_accuracy``: the label is among the k highest scores; ties count in the label's favour (its
  rank is the number of classes scored strictly higher). sklearn's ``top_k_accuracy_score`` breaks
  ties by class index instead; the two agree when scores are distinct;
* ``confusion_matrix`` ``cm[i, j]`` = number of samples of class i predicted as j (rows are labels,
  as ``sklearn.metrics.confusion_matrix``); the other metrics read it;
* ``per_class_recall`` = ``cm[c, c] / sum_j cm[c, j]``, NaN for a class without samples;
  ``mean_class_recall`` = mean over classes with samples (=
  ``sklearn.metrics.balanced_accuracy_score``; the "mean class recall" of imbalanced / medical
  continual learning, GiantJun/CL_Pytorch ``utils/toolkit.py``, ``cal_mean_class_recall``);
* ``macro_f1`` = mean over classes of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, over the classes
  that occur among the labels or the predictions (``sklearn.metrics.f1_score(average="macro")``);
* ``head_tail``: the mean of a per-class metric over head classes and over tail classes, given the
  tail-class list (NaN entries, classes absent from the evaluation data, are left out). Long-tailed
  recognition reports such groups (many / medium / few-shot in Kang et al., "Decoupling
  Representation and Classifier for Long-Tailed Recognition", ICLR 2020); the imbalanced medical
  classification of Zeng et al. (arXiv 2207.06975) reports macro-F1 and the recall of its rare
  classes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(labels, predicted) -> float:
  """Fraction of samples whose predicted class equals the label."""
  return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def top_k_accuracy(labels, scores, k: int = 5) -> float:
  """Fraction of samples whose label is among the ``k`` highest of ``scores [N, C]``."""
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  label_score = np.take_along_axis(scores, labels[:, None], axis=1)
  return float(np.mean((scores > label_score).sum(axis=1) < k))


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
  """``cm [C, C]`` (int64) with ``cm[i, j]`` = number of samples of class i predicted as class j."""
  labels = np.asarray(labels, np.int64).ravel()
  predicted = np.asarray(predicted, np.int64).ravel()
  flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes)


def per_class_recall(cm) -> np.ndarray:
  """Recall of each class ``[C]`` from a confusion matrix; NaN where the class has no sample."""
  cm = np.asarray(cm, np.float64)
  support = cm.sum(axis=1)
  return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_class_recall(cm) -> float:
  """Mean recall over the classes that have samples (balanced accuracy)."""
  return float(np.nanmean(per_class_recall(cm)))


def per_class_f1(cm) -> np.ndarray:
  """F1 of each class ``[C]``; NaN for a class neither in the labels nor in the predictions."""
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  denominator = cm.sum(axis=0) + cm.sum(axis=1)  # 2 TP + FP + FN
  return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def macro_f1(cm) -> float:
  """Unweighted mean of the per-class F1 over the classes that occur."""
  return float(np.nanmean(per_class_f1(cm)))


def head_tail(per_class, tail_classes: Sequence[int]) -> dict[str, float]:
  """``{"head": mean over non-tail classes, "tail": mean over tail classes}`` of a per-class metric,
  NaN entries left out."""
  per_class = np.asarray(per_class, np.float64)
  tail = np.zeros(len(per_class), bool)
  tail[np.asarray(tail_classes, np.int64)] = True
  return {"head": float(np.nanmean(per_class[~tail])), "tail": float(np.nanmean(per_class[tail]))}


def classification_report(labels, predicted, num_classes: int,
                          tail_classes: Sequence[int] | None = None) -> dict[str, float]:
  """Accuracy, macro-F1, mean class recall, and with ``tail_classes`` head / tail recall."""
  cm = confusion_matrix(labels, predicted, num_classes)
  out = {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "macro_f1": macro_f1(cm),
         "mean_class_recall": mean_class_recall(cm)}
  if tail_classes is not None:
    groups = head_tail(per_class_recall(cm), tail_classes)
    out.update({"head_recall": groups["head"], "tail_recall": groups["tail"]})
  return out

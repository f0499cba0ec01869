"""Semantic-segmentation metrics from a dataset-level confusion matrix accumulated batch by batch.

The MMSegmentation convention (``mmseg/core/evaluation/metrics.py``, ``intersect_and_union`` and
``total_area_to_metrics``, v0.24 as forked by AUCSeg, boyuh/AUCSeg): pixels whose label is
``ignore_index`` (255) are dropped; intersections and unions are summed over the whole split before
dividing (not per image):
* ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``, NaN for a class absent from both labels and predictions
  (a class predicted but never labelled has IoU 0);
* ``mIoU`` = mean of the non-NaN IoUs (``np.nanmean``, as mmseg);
* pixel accuracy (mmseg's ``aAcc``) = correct pixels / labelled pixels;
* head / tail mIoU: the mIoU over the classes outside / inside a tail-class list, as AUCSeg (Han et
  al., NeurIPS 2024, arXiv 2409.20398) reports for long-tailed segmentation; its tail lists are
  those of its T-Memory Bank configs (``aucseg_configs/*.py``, ``small_index``: ADE20K classes
  26..149, Cityscapes [6, 12, 14, 15, 16, 17, 18]).

Usage, with ``cm = np.zeros((C, C), np.int64)`` before the first batch::

  cm = update(cm, labels, predicted)          # per batch, any shape, on the host
  metrics = segmentation_report(cm, tail_classes)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ml_pipelines.evaluators import classification


def update(cm: np.ndarray, labels, predicted, ignore_index: int = 255) -> np.ndarray:
  """``cm`` plus the confusion matrix of one batch (``labels`` and ``predicted`` of equal shape);
  pixels labelled ``ignore_index`` are skipped. Returns a new array."""
  labels = np.asarray(labels).ravel()
  keep = labels != ignore_index
  return cm + classification.confusion_matrix(labels[keep], np.asarray(predicted).ravel()[keep],
                                              cm.shape[0])


def iou_per_class(cm) -> np.ndarray:
  """IoU of each class ``[C]``; NaN where the class is neither labelled nor predicted."""
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  union = cm.sum(axis=0) + cm.sum(axis=1) - tp
  return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(cm) -> float:
  return float(np.nanmean(iou_per_class(cm)))


def pixel_accuracy(cm) -> float:
  cm = np.asarray(cm)
  return float(np.trace(cm) / max(cm.sum(), 1))


def segmentation_report(cm, tail_classes: Sequence[int] | None = None) -> dict[str, float]:
  """mIoU, pixel accuracy and, with ``tail_classes``, head / tail mIoU."""
  iou = iou_per_class(cm)
  out = {"mIoU": float(np.nanmean(iou)), "pixel_accuracy": pixel_accuracy(cm)}
  if tail_classes is not None:
    groups = classification.head_tail(iou, tail_classes)
    out.update({"mIoU_head": groups["head"], "mIoU_tail": groups["tail"]})
  return out

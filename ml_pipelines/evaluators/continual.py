"""Continual-learning summaries of the accuracy matrix.

``acc[i, j]`` = accuracy on the test data of task j after training task i (rows are training stages,
0-based; the convention of GEM, Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual
Learning", NeurIPS 2017, Sec. 2; GiantJun/CL_Pytorch stores the transpose,
``task_metric_curve[j][i]``). Only entries with ``j <= i`` are read, except by ``forgetting`` (see
there). With T + 1 rows (T = index of the last stage trained so far):
* average incremental accuracy (Rebuffi et al., "iCaRL", CVPR 2017; ACL's "AvgAcc"): the mean over
  stages i of ``A^i``, the accuracy on the test data of all tasks seen so far; from the matrix,
  ``A^i = sum_{j<=i} n_j acc[i, j] / sum_{j<=i} n_j`` with ``n_j`` the test-set sizes (equal weights
  when not given; CL_Pytorch computes A^i directly on the pooled test data, which is the same);
* final average accuracy = ``mean_{j<=T} acc[T, j]`` (CL_Pytorch's "Final Average ... of all task");
* forgetting (Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018; as CL_Pytorch
  ``utils/toolkit.py``, ``cal_avg_forgetting``) = ``mean_{j<T} (max_{l<T} acc[l, j] - acc[T, j])``;
  the max runs over every earlier stage, as in both sources (entries ``l < j``, before task j was
  trained, are normally lower and do not matter); 0 after the first task;
* backward transfer (GEM, "BWT") = ``mean_{j<T} (acc[T, j] - acc[j, j])``; 0 after the first task.
  CL_Pytorch's ``cal_bwf`` is a different quantity (per old task, the mean change over all later
  stages).
"""
from __future__ import annotations

import numpy as np


def _matrix(acc) -> np.ndarray:
  acc = np.asarray(acc, np.float64)
  if acc.ndim != 2 or acc.shape[1] < acc.shape[0]:
    raise ValueError(f"acc must be [stages, tasks] with stages <= tasks, got {acc.shape}")
  return acc


def average_incremental_accuracy(acc, task_sizes=None) -> float:
  """Mean over stages of the (test-size weighted) accuracy on the tasks seen so far."""
  acc = _matrix(acc)
  stages = acc.shape[0]
  weights = np.ones(acc.shape[1]) if task_sizes is None else np.asarray(task_sizes, np.float64)
  seen = np.tril(np.ones((stages, acc.shape[1])))  # seen[i, j] = j <= i
  per_stage = (acc * seen * weights).sum(axis=1) / (seen * weights).sum(axis=1)
  return float(per_stage.mean())


def final_average_accuracy(acc) -> float:
  """Mean accuracy over all tasks seen, after the last stage."""
  acc = _matrix(acc)
  return float(acc[-1, :acc.shape[0]].mean())


def forgetting(acc) -> float:
  """Mean over old tasks of the drop from their best earlier accuracy to the last stage's."""
  acc = _matrix(acc)
  last = acc.shape[0] - 1
  if last == 0:
    return 0.0
  return float((acc[:last, :last].max(axis=0) - acc[last, :last]).mean())


def backward_transfer(acc) -> float:
  """GEM's BWT: mean over old tasks of (last-stage accuracy - accuracy right after training it)."""
  acc = _matrix(acc)
  last = acc.shape[0] - 1
  if last == 0:
    return 0.0
  return float((acc[last, :last] - np.diag(acc)[:last]).mean())


def continual_report(acc, task_sizes=None) -> dict[str, float]:
  return {"average_incremental_accuracy": average_incremental_accuracy(acc, task_sizes),
          "final_average_accuracy": final_average_accuracy(acc),
          "forgetting": forgetting(acc), "backward_transfer": backward_transfer(acc)}


def min_others_predict(logits, task_sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ACL's inference (GiantJun/CL_Pytorch ``ACL.min_others_test``): `logits`
  ``[B, sum_i (C_i + 1)]`` are per-task heads, each with an "others" last output. Per task a softmax over its C_i + 1
  outputs; the predicted task is the one with the lowest "others" probability u_i; the class is
  first_class(i*) + argmax of head i*'s first C_i probabilities. Returns (predicted classes,
  predicted task ids, confidence 1 - u_i*)."""
  logits = np.asarray(logits, np.float64)
  others, known, start = [], [], 0
  for c in task_sizes:
    z = logits[:, start:start + c + 1]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    others.append(p[:, -1])
    known.append(p[:, :-1])
    start += c + 1
  others = np.stack(others, 1)
  task = np.argmin(others, axis=1)
  firsts = np.concatenate([[0], np.cumsum(task_sizes)[:-1]])
  pred = np.array([firsts[t] + np.argmax(known[t][b]) for b, t in enumerate(task)], np.int64)
  return pred, task, 1.0 - others[np.arange(len(task)), task]

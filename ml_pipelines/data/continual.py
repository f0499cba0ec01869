"""The class-incremental protocol as pure NumPy functions: class order, task split, exemplar memory.

* Class order: ``np.random.seed(seed); np.random.permutation(C)`` as GiantJun/CL_Pytorch (the ACL
  code; seed 1993 for CIFAR-100) and iCaRL / PyCIL, or the identity order (seed None, as Skin8).
  Classes are then renamed by their rank in the order, so task t holds the ranks
  ``[first(t), first(t) + size(t))``.
* Task split: ``B{base}-Inc{increment}``: a first task of ``base`` classes (``increment`` when 0:
  "B0"), then tasks of ``increment`` classes.
* Exemplar memory (iCaRL, Rebuffi et al. CVPR 2017, Alg. 4-5; CL_Pytorch ``utils/replayBank.py``):
  a fixed total budget M split evenly, ``quota = M // seen classes``; when the quota shrinks each
  old class keeps the first ``quota`` exemplars of its herding order; each new class gets ``quota``
  exemplars by herding.  The memory is a fixed-size int array ``[M]`` of training-split indices
  (-1 = empty slot), grouped by class rank, each class in herding order, so it lives in a task's
  checkpointed state.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def class_order(num_classes: int, seed: int | None) -> np.ndarray:
  """The class order: a seeded permutation (CL_Pytorch: ``np.random.seed(seed)`` then
  ``np.random.permutation``), or ``arange`` when ``seed`` is None."""
  if seed is None:
    return np.arange(num_classes)
  return np.random.RandomState(seed).permutation(num_classes)


def check_order(order: Sequence[int], num_classes: int) -> np.ndarray:
  """`order` as an array, after checking it is a permutation of ``range(num_classes)``."""
  order = np.asarray(order, np.int64)
  values, counts = np.unique(order, return_counts=True)
  repeated = values[counts > 1].tolist()
  missing = sorted(set(range(num_classes)) - set(values.tolist()))
  unknown = sorted(set(values.tolist()) - set(range(num_classes)))
  if repeated or missing or unknown:
    raise ValueError(f"The class order must list each of the {num_classes} classes once: "
                     f"repeated {repeated}, missing {missing}, unknown {unknown}.")
  return order


def task_sizes(num_classes: int, base: int, increment: int) -> list[int]:
  """Classes per task of a ``B{base}-Inc{increment}`` split (base 0: every task has `increment`)."""
  first = base or increment
  if increment <= 0 or first > num_classes or (num_classes - first) % increment:
    raise ValueError(f"B{base}-Inc{increment} does not split {num_classes} classes into tasks.")
  return [first] + [increment] * ((num_classes - first) // increment)


def task_bounds(sizes: Sequence[int]) -> np.ndarray:
  """``[T + 1]`` cumulative class counts: task t holds ranks ``[bounds[t], bounds[t + 1])``."""
  return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def check_budget(memory_size: int, num_classes: int) -> None:
  if 0 < memory_size < num_classes:
    raise ValueError(f"The exemplar memory of {memory_size} is smaller than the {num_classes} "
                     f"classes: every class needs at least one exemplar; raise memory_size.")


def herding_select(vectors: np.ndarray, m: int) -> np.ndarray:
  """iCaRL herding (CL_Pytorch ``ReplayBank.herding_select``): L2-normalise the vectors, take
  their mean mu (not re-normalised), then for k = 1..m pick the unpicked vector v minimising
  ``|| mu - (S + v) / k ||`` with S the sum of the k-1 picked ones (first index on ties)."""
  v = np.asarray(vectors, np.float64)
  v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
  mu = v.mean(0)
  m = min(m, len(v))
  chosen, total = [], np.zeros_like(mu)
  free = np.ones(len(v), bool)
  for k in range(1, m + 1):
    dist = np.linalg.norm(mu - (total + v) / k, axis=1)
    dist[~free] = np.inf
    i = int(np.argmin(dist))
    chosen.append(i)
    free[i] = False
    total = total + v[i]
  return np.asarray(chosen, np.int64)


def memory_by_class(memory: np.ndarray, ranks: np.ndarray) -> dict[int, np.ndarray]:
  """{class rank: its exemplars in herding order}; `ranks[i]` is the rank of training example i."""
  memory = np.asarray(memory)
  memory = memory[memory >= 0]
  out: dict[int, np.ndarray] = {}
  for c in np.unique(ranks[memory]):
    out[int(c)] = memory[ranks[memory] == c]
  return out


def pack(groups: dict[int, np.ndarray], size: int) -> np.ndarray:
  """The ``[size]`` memory array of `groups` (class order, -1 padded)."""
  flat = np.concatenate([groups[c] for c in sorted(groups)] or [np.zeros(0, np.int64)])
  out = np.full(size, -1, np.int32)
  out[:len(flat)] = flat
  return out


def updated_memory(memory: np.ndarray, ranks: np.ndarray, new_classes: Sequence[int],
                   new_order: dict[int, np.ndarray], memory_size: int) -> np.ndarray:
  """The memory after a task: old classes cut to the new quota, each new class's first `quota` of
  its herding order (`new_order[c]`: training indices in herding order, at least `quota` long
  when the class has that many)."""
  groups = memory_by_class(memory, ranks)
  quota = memory_size // (len(groups) + len(new_classes))
  groups = {c: g[:quota] for c, g in groups.items()}
  for c in new_classes:
    groups[int(c)] = np.asarray(new_order[int(c)])[:quota]
  return pack(groups, memory_size)

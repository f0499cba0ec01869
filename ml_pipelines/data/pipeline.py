"""Grain input pipelines: deterministic global batches, each process reading only its own rows.

Training: epoch e visits the split in the order `permutation(seed, e)`; global batch b of the run is
`order[b*B:(b+1)*B]` (the remainder of each epoch is dropped so every batch is full). Process p reads
the contiguous rows `[p*B/P, (p+1)*B/P)` of each global batch -- exactly the rows its devices hold
under the batch sharding -- so 2 processes x 2 devices see the same global batch as 1 x 4. The
grain dataset is indexed by step, so its iterator state (checkpointed with the model) is a step
number and a resumed run reads exactly the examples it would have read.

Evaluation: every example exactly once, in order; the last global batch is padded with `mask=False`
rows, never dropped.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import grain
import jax
import numpy as np

from ml_pipelines.data import Dataset


def _check_example(example: dict, spec, where: str) -> None:
  for name, (shape, dtype) in spec.items():
    if name not in example:
      raise ValueError(f"{where}: example has no field {name!r}; expected fields {sorted(spec)}.")
    value = np.asarray(example[name])
    if tuple(value.shape) != tuple(shape) or value.dtype != np.dtype(dtype):
      raise ValueError(f"{where}: field {name!r} has shape {value.shape} dtype {value.dtype}; "
                       f"expected shape {tuple(shape)} dtype {np.dtype(dtype)}.")


def check_batch(batch: dict, spec, batch_size: int, where: str = "batch") -> None:
  """Fails with a message naming the expected shape and dtype of each field."""
  for name, (shape, dtype) in spec.items():
    if name not in batch:
      raise ValueError(f"{where}: no field {name!r}; expected fields {sorted(spec)}.")
    value = batch[name]
    want = (batch_size, *shape)
    if tuple(value.shape) != want or value.dtype != np.dtype(dtype):
      raise ValueError(f"{where}: field {name!r} has shape {tuple(value.shape)} dtype "
                       f"{value.dtype}; expected shape {want} dtype {np.dtype(dtype)}.")


def _stack(examples: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


class TrainBatches:
  """The local rows of global training batch `step`, for step = 0, 1, 2, ..."""

  def __init__(self, dataset: Dataset, global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f"batch_size {global_batch} does not divide by {process_count} processes.")
    self.dataset = dataset
    self.size = len(dataset.source)
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    if self.size < global_batch:
      raise ValueError(f"The training split has {self.size} examples, fewer than batch_size "
                       f"{global_batch}.")
    self.steps_per_epoch = self.size // global_batch
    self.seed = seed
    self.offset = process_index * self.local_batch
    self._orders: dict[int, np.ndarray] = {}

  def _order(self, epoch: int) -> np.ndarray:
    if epoch not in self._orders:
      self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
    return self._orders[epoch]

  def indices(self, step: int) -> np.ndarray:
    epoch, b = divmod(step, self.steps_per_epoch)
    start = b * self.global_batch + self.offset
    return self._order(epoch)[start:start + self.local_batch]

  def __len__(self) -> int:
    return np.iinfo(np.int32).max

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    examples = []
    for i in self.indices(step):
      ex = dict(self.dataset.source[int(i)])
      if self.dataset.preprocess is not None:
        ex = self.dataset.preprocess(ex, np.random.default_rng([self.seed, step, int(i)]))
      ex["index"] = np.int32(i)
      examples.append(ex)
    return _stack(examples)


def train_iterator(dataset: Dataset, global_batch: int, seed: int, start_step: int = 0,
                   num_threads: int = 2, prefetch: int = 4):
  """A grain iterator over local training batches starting at `start_step`.

  Returns the iterator; `iterator.get_state()` / `set_state()` round-trip through checkpoints.
  """
  batches = TrainBatches(dataset, global_batch, seed, jax.process_index(), jax.process_count())
  ds = grain.MapDataset.source(batches)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=prefetch)).__iter__()
  if start_step:
    it.set_state({"next_index": int(start_step)})
  return it


def eval_batches(dataset: Dataset, global_batch: int, indices: np.ndarray | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Local eval batches covering every example (or `indices`) once; padding rows have mask=False."""
  if indices is None:
    indices = np.arange(len(dataset.source))
  indices = np.asarray(indices)
  pc, pi = jax.process_count(), jax.process_index()
  if global_batch % pc:
    raise ValueError(f"eval_batch_size {global_batch} does not divide by {pc} processes.")
  local = global_batch // pc
  num_batches = max(1, math.ceil(len(indices) / global_batch))
  for b in range(num_batches):
    rows = np.arange(b * global_batch + pi * local, b * global_batch + (pi + 1) * local)
    valid = rows < len(indices)
    examples = []
    for r, ok in zip(rows, valid):
      i = int(indices[r] if ok else indices[0])
      ex = dict(dataset.source[i])
      if dataset.eval_preprocess is not None:
        ex = dataset.eval_preprocess(ex)
      ex["index"] = np.int32(i)
      examples.append(ex)
    batch = _stack(examples)
    batch["mask"] = valid
    yield batch


def to_global(local_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Assembles the global batch from every process's rows (`make_array_from_process_local_data`)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def batch_spec(dataset: Dataset) -> dict[str, Any]:
  spec = dict(dataset.element_spec)
  spec.setdefault("index", ((), np.int32))
  return spec

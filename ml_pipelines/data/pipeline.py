"""Grain input pipelines: deterministic global batches, each process reading only its own rows.

Training: a run is a table of stages, each with a sampler (`samplers.py`: shuffled epochs by
default, P x K identities, class-balanced, or a task-given index list); the global batch at a step
is a pure function of (seed, stage, step within the stage). Process p reads the contiguous rows
`[p*B/P, (p+1)*B/P)` of each global batch -- exactly the rows its devices hold under the batch
sharding -- so 2 processes x 2 devices see the same global batch as 1 x 4. Example i at step t is
augmented with a generator seeded by (seed, t, i). The iterator state (checkpointed with the model)
is the next step plus the index lists set so far, so a resumed run reads exactly the examples it
would have read.

Evaluation: every example exactly once, in order; the last global batch is padded with `mask=False`
rows, never dropped.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import grain
import jax
import numpy as np

from ml_pipelines.data import ArraySource, Dataset, samplers


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


def _as_dict(config) -> dict:
  return dict(config.to_dict() if hasattr(config, "to_dict") else config)


class TrainBatches:
  """The local rows of global training batch `step`, for step = 0, 1, 2, ... of the whole run.

  `stages`: `[(first_step, sampler_config), ...]`, first steps increasing from 0; stage i serves
  steps `[first_i, first_{i+1})` and its sampler sees the step counted from `first_i`.
  """

  def __init__(self, dataset: Dataset, global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1,
               stages: list[tuple[int, Any]] | None = None):
    if global_batch % process_count:
      raise ValueError(f"batch_size {global_batch} does not divide by {process_count} processes.")
    self.dataset = dataset
    self.size = len(dataset.source)
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.seed = seed
    self.offset = process_index * self.local_batch
    stages = [(int(s), _as_dict(c)) for s, c in (stages or [(0, {"name": "epochs"})])]
    firsts = [s for s, _ in stages]
    if firsts[0] != 0 or any(b <= a for a, b in zip(firsts, firsts[1:])):
      raise ValueError(f"Stage first steps must start at 0 and increase, got {firsts}.")
    for _, c in stages:
      samplers.check(c)
    self.stages = stages
    self.index_lists: dict[int, np.ndarray] = {}
    self._samplers: dict[int, Any] = {}
    self._labels: dict[str, np.ndarray] = {}

  def stage_of(self, step: int) -> int:
    return int(np.searchsorted([s for s, _ in self.stages], step, side="right")) - 1

  def stage_end(self, stage: int) -> int | None:
    """The first step after `stage`, or None for the last stage."""
    return self.stages[stage + 1][0] if stage + 1 < len(self.stages) else None

  def labels(self, field: str) -> np.ndarray:
    """One label per example, read once (ArraySource: its array; otherwise one pass)."""
    if field not in self._labels:
      source = self.dataset.source
      if isinstance(source, ArraySource):
        self._labels[field] = np.asarray(source.arrays[field])
      else:
        self._labels[field] = np.array([np.asarray(source[i][field]) for i in range(self.size)])
    return self._labels[field]

  def set_index_list(self, stage: int, indices) -> None:
    if self.stages[stage][1].get("name") != "index_list":
      raise ValueError(f"Stage {stage} samples with {self.stages[stage][1]}, not an index list.")
    self.index_lists[int(stage)] = np.asarray(indices, np.int64).ravel()
    self._samplers.pop(int(stage), None)

  def sampler(self, stage: int):
    if stage not in self._samplers:
      self._samplers[stage] = samplers.build(
          self.stages[stage][1], size=self.size, global_batch=self.global_batch, seed=self.seed,
          stage=stage, labels=self.labels, index_list=self.index_lists.get(stage))
    return self._samplers[stage]

  def global_indices(self, step: int) -> np.ndarray:
    stage = self.stage_of(step)
    return self.sampler(stage).indices(step - self.stages[stage][0])

  def indices(self, step: int) -> np.ndarray:
    """This process's rows of global batch `step`."""
    return self.global_indices(step)[self.offset:self.offset + self.local_batch]

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    examples = []
    for i in self.indices(step):
      ex = dict(self.dataset.source[int(i)])
      if self.dataset.preprocess is not None:
        ex = self.dataset.preprocess(ex, np.random.default_rng([self.seed, step, int(i)]))
      ex["index"] = np.int32(i)
      examples.append(ex)
    return _stack(examples)


class _Steps:
  """Steps `[first, stop)` of `batches` as a random-access source (stop None: unbounded)."""

  def __init__(self, batches: TrainBatches, first: int, stop: int | None):
    self.batches, self.first = batches, first
    self._len = (stop if stop is not None else np.iinfo(np.int32).max) - first

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return self.batches[self.first + int(i)]


class TrainIterator:
  """Local training batches from `next_step` on, prefetched by grain threads within one stage.

  Prefetching never crosses a stage boundary: the next stage's grain iterator starts when its first
  batch is asked for, after the trainer's stage-start hook has set that stage's index list.
  `get_state()` is JSON: the next step and every index list set so far.
  """

  def __init__(self, batches: TrainBatches, start_step: int = 0, num_threads: int = 2,
               prefetch: int = 4):
    self.batches = batches
    self.next_step = int(start_step)
    self._options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    self._it = None
    self._stop: int | None = None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None or (self._stop is not None and self.next_step >= self._stop):
      stage = self.batches.stage_of(self.next_step)
      self.batches.sampler(stage)  # fails here, on the caller's thread, if a list is missing
      self._stop = self.batches.stage_end(stage)
      source = _Steps(self.batches, self.next_step, self._stop)
      self._it = iter(grain.MapDataset.source(source).to_iter_dataset(self._options))
    batch = next(self._it)
    self.next_step += 1
    return batch

  def set_index_list(self, stage: int, indices) -> None:
    self.batches.set_index_list(stage, indices)
    self._it = None  # drop anything prefetched from the old list

  def get_state(self) -> dict[str, Any]:
    lists = self.batches.index_lists
    return {"next_index": self.next_step,
            "index_lists": {str(s): lists[s].tolist() for s in sorted(lists)}}

  def set_state(self, state: dict[str, Any]) -> None:
    self.next_step = int(state["next_index"])
    for s, v in state.get("index_lists", {}).items():
      self.batches.set_index_list(int(s), np.asarray(v, np.int64))
    self._it = None


def train_iterator(dataset: Dataset, global_batch: int, seed: int, start_step: int = 0,
                   stages: list[tuple[int, Any]] | None = None, num_threads: int = 2,
                   prefetch: int = 4) -> TrainIterator:
  """This process's training batches from `start_step` on (see `TrainIterator`)."""
  batches = TrainBatches(dataset, global_batch, seed, jax.process_index(), jax.process_count(),
                         stages)
  return TrainIterator(batches, start_step, num_threads, prefetch)


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

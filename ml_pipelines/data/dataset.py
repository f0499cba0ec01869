"""The `Dataset` record every builder returns, and the in-memory source."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Example = dict[str, np.ndarray]


class ArraySource:
  """Random access over dict-of-arrays held in memory (embedded datasets, tests)."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"All arrays need the same length, got {sizes}.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self._len = next(iter(sizes.values()))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int) -> Example:
    return {k: v[i] for k, v in self.arrays.items()}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One split of a dataset as the input pipeline consumes it.

  source: random access, `len(source)` and `source[i] -> dict of numpy arrays`.
  element_spec: name -> (shape, dtype) of one example *after* preprocessing; every batch is checked.
  preprocess: `fn(example, rng: np.random.Generator) -> example`, applied to training examples with a
    generator seeded by (seed, epoch, index), so a resumed run draws the same augmentations.
  eval_preprocess: `fn(example) -> example` for evaluation.
  info: free-form facts the task or model needs (`num_classes`, ...).
  """
  source: Sequence[Example]
  element_spec: Mapping[str, tuple[tuple[int, ...], Any]]
  preprocess: Callable[[Example, np.random.Generator], Example] | None = None
  eval_preprocess: Callable[[Example], Example] | None = None
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def spec_of(example: Example) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """The element spec of one example, for builders that derive it from data."""
  return {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in example.items()}

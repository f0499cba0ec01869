"""ArrayRecord files of numpy examples: what our `prep` commands write and pipelines read.

TFDS builders need TensorFlow to *build*; our manual-directory datasets (CREMA-D, Kinetics-Sounds,
NUS-WIDE, re-ID sets, ...) are instead written here as ArrayRecord shards of `.npz`-encoded examples
and read through grain's ArrayRecord source. No TensorFlow anywhere, so tests can build them.
Layout: `<dir>/<split>.array_record-<i>-of-<n>`.
"""
from __future__ import annotations

import glob
import io
import os
from typing import Iterable

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

Example = dict[str, np.ndarray]


def encode(example: Example) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in example.items()})
  return buf.getvalue()


def decode(record: bytes) -> Example:
  with np.load(io.BytesIO(record), allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def write(directory: str, split: str, examples: Iterable[Example], num_shards: int = 1) -> list[str]:
  """Writes `examples` round-robin into `num_shards` ArrayRecord files; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  paths = [os.path.join(directory, f"{split}.array_record-{i:05d}-of-{num_shards:05d}")
           for i in range(num_shards)]
  writers = [ArrayRecordWriter(p, "group_size:1") for p in paths]
  try:
    for i, ex in enumerate(examples):
      writers[i % num_shards].write(encode(ex))
  finally:
    for w in writers:
      w.close()
  return paths


def shard_paths(directory: str, split: str) -> list[str]:
  return sorted(glob.glob(os.path.join(directory, f"{split}.array_record-*")))


class RecordSource:
  """Random access over the ArrayRecord shards of one split, decoding to numpy examples."""

  def __init__(self, directory: str, split: str, prepare_hint: str = ""):
    paths = shard_paths(directory, split)
    if not paths:
      hint = f" Prepare it with: {prepare_hint}" if prepare_hint else ""
      raise FileNotFoundError(
          f"No ArrayRecord files for split {split!r} under {directory!r}.{hint}")
    import grain
    self._source = grain.sources.ArrayRecordDataSource(paths)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i: int) -> Example:
    return decode(self._source[i])

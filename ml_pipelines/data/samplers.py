"""Samplers: which examples make up the global training batch at a step of a stage.

A sampler is a pure function `indices(step) -> [global_batch]` of the run's seed, the stage it
serves and the step counted from the start of that stage, so a resumed run reads exactly what an
uninterrupted one would have read. Random draws come from `rng(seed, stage, counter)`, a
`SeedSequence` spawn key of the run seed (independent of the per-example augmentation streams,
which are keyed `[seed, step, index]`).

Config (`config.data.sampler`, or one row of the stage table): `{name, **options}`.
- `epochs`: shuffled epochs over the split (`permutation(rng(seed, stage, e))` for epoch e); global
  batch b of an epoch is `order[b*B:(b+1)*B]`, the remainder of each epoch is dropped.
- `pk` (options `k`, `label`): P = B / k identities x k instances per batch, grouped by identity
  (FaceNet / "In Defense of the Triplet Loss" batches; torchreid's RandomIdentitySampler).
  Identities are drawn without replacement: an identity epoch is a permutation of the identities cut
  into groups of P (remainder dropped). Each visit of an identity draws its k instances without
  replacement, or with replacement when it has fewer than k.
- `class_balanced` (option `label`): every row independently draws a class uniformly, then an
  instance of that class uniformly ("class-balanced sampling", p_j = 1/C, Kang et al. 2020,
  "Decoupling Representation and Classifier for Long-Tailed Recognition", Eq. 1 with q = 0).
  Class frequencies are uniform in expectation; an example may repeat within a batch.
- `index_list`: shuffled epochs, as `epochs`, over a list of example indices the task sets at the
  stage start (`set_index_list`): the current task's classes plus an exemplar memory.
- `labeled_unlabeled` (options `ratio` mu, `num_labeled`, `labeled_file`, `source_index`, `label`):
  semi-supervised batches (FixMatch, Sohn et al. 2020, Sec. 3): the first B / (1 + mu) rows come
  from the labeled subset, the other mu B / (1 + mu) from every example of the split (the unlabeled
  set includes the labeled images, as FixMatch's and FreeMatch's code). Both are shuffled epochs
  with independent orders; the labeled subset is repeated until it fills a batch. The subset is
  `num_labeled / K` examples per class drawn with the run seed, or the positions listed in
  `labeled_file` (.npy, or JSON: a list or the official splits' `[labeled, unlabeled]`; with
  `source_index` the listed numbers are matched against that per-example field, e.g. the original
  CIFAR order).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ml_pipelines.registry import unknown_options

OPTIONS = {"epochs": frozenset(), "pk": frozenset({"k", "label"}),
           "class_balanced": frozenset({"label"}), "index_list": frozenset(),
           "labeled_unlabeled": frozenset({"ratio", "num_labeled", "labeled_file", "source_index",
                                           "label"})}


def rng(seed: int, stage: int, counter: int, stream: int = 0) -> np.random.Generator:
  """The generator of draw `counter` of `stage`; `stream` > 0 keys an independent sequence."""
  key = (int(stage), int(counter)) + ((int(stream),) if stream else ())
  return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


class Epochs:
  """Shuffled epochs over `pool` (every example, or an index list); the remainder is dropped."""

  def __init__(self, pool: np.ndarray, global_batch: int, seed: int, stage: int, stream: int = 0):
    self.pool = np.asarray(pool, np.int64)
    if len(self.pool) < global_batch:
      raise ValueError(f"Stage {stage} samples from {len(self.pool)} examples (the whole split, or "
                       f"its index list), fewer than batch_size {global_batch}.")
    self.global_batch, self.seed, self.stage, self.stream = global_batch, seed, stage, stream
    self.steps_per_epoch = len(self.pool) // global_batch
    self._cache: tuple[int, np.ndarray] | None = None

  def _order(self, epoch: int) -> np.ndarray:
    cache = self._cache  # one read: grain threads may replace it concurrently
    if cache is None or cache[0] != epoch:
      order = rng(self.seed, self.stage, epoch, self.stream).permutation(len(self.pool))
      cache = (epoch, self.pool[order])
      self._cache = cache
    return cache[1]

  def indices(self, step: int) -> np.ndarray:
    epoch, b = divmod(step, self.steps_per_epoch)
    return self._order(epoch)[b * self.global_batch:(b + 1) * self.global_batch]


def _members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(order, starts, counts): the examples of class c are order[starts[c]:starts[c] + counts[c]],
  classes being the distinct labels in sorted order."""
  order = np.argsort(labels, kind="stable")
  _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
  return order, starts, counts


class IdentityBatches:
  """`pk`: P identities x K instances per global batch, rows grouped by identity."""

  def __init__(self, labels: np.ndarray, global_batch: int, k: int, seed: int, stage: int):
    if k < 1 or global_batch % k:
      raise ValueError(f"pk sampler: batch_size {global_batch} is not a multiple of k={k}.")
    self.order, self.starts, self.counts = _members(np.asarray(labels))
    self.p, self.k = global_batch // k, k
    if len(self.counts) < self.p:
      raise ValueError(f"pk sampler: {len(self.counts)} identities, fewer than P = "
                       f"batch_size / k = {self.p}.")
    self.steps_per_epoch = len(self.counts) // self.p
    self.seed, self.stage = seed, stage
    self._cache: tuple[int, np.ndarray] | None = None

  def _epoch(self, epoch: int) -> np.ndarray:
    """[steps_per_epoch, P*K] example indices of one identity epoch."""
    cache = self._cache
    if cache is None or cache[0] != epoch:
      g = rng(self.seed, self.stage, epoch)
      ids = g.permutation(len(self.counts))[:self.steps_per_epoch * self.p]
      rows = [self.order[self.starts[c] + g.choice(self.counts[c], self.k,
                                                   replace=self.counts[c] < self.k)]
              for c in ids]
      cache = (epoch, np.stack(rows).reshape(self.steps_per_epoch, self.p * self.k))
      self._cache = cache
    return cache[1]

  def indices(self, step: int) -> np.ndarray:
    epoch, b = divmod(step, self.steps_per_epoch)
    return self._epoch(epoch)[b]


class ClassBalanced:
  """`class_balanced`: each row draws a class uniformly, then one of its examples uniformly."""

  def __init__(self, labels: np.ndarray, global_batch: int, seed: int, stage: int):
    self.order, self.starts, self.counts = _members(np.asarray(labels))
    self.global_batch, self.seed, self.stage = global_batch, seed, stage

  def indices(self, step: int) -> np.ndarray:
    g = rng(self.seed, self.stage, step)
    classes = g.integers(len(self.counts), size=self.global_batch)
    within = np.floor(g.random(self.global_batch) * self.counts[classes]).astype(np.int64)
    return self.order[self.starts[classes] + within]


def labeled_subset(labels: np.ndarray, num_labeled: int, seed: int) -> np.ndarray:
  """`num_labeled / K` examples of each of the K classes, drawn without replacement (FixMatch's
  `x_u_split`), in class order."""
  classes = np.unique(labels)
  if num_labeled % len(classes):
    raise ValueError(f"num_labeled={num_labeled} is not a multiple of the {len(classes)} classes.")
  g = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2**31 - 1,)))
  per_class = num_labeled // len(classes)
  return np.concatenate([g.choice(np.flatnonzero(labels == c), per_class, replace=False)
                         for c in classes])


def read_labeled_file(path: str, source_index: np.ndarray | None = None) -> np.ndarray:
  """Positions of the labeled examples listed in `path` (see `labeled_unlabeled`)."""
  if path.endswith(".npy"):
    listed = np.load(path).tolist()
  else:
    import json
    with open(path) as f:
      listed = json.load(f)
  if listed and isinstance(listed[0], list):  # the official splits: [labeled, unlabeled]
    listed = listed[0]
  listed = np.unique(np.asarray(listed, np.int64))
  if source_index is None:
    return listed
  position = {int(v): i for i, v in enumerate(source_index)}
  missing = [int(v) for v in listed if int(v) not in position]
  if missing:
    raise ValueError(f"{path}: {len(missing)} listed examples are not in the split "
                     f"(first: {missing[:5]}).")
  return np.array([position[int(v)] for v in listed], np.int64)


class LabeledUnlabeled:
  """`labeled_unlabeled`: [B / (1 + mu) labeled rows, mu B / (1 + mu) rows of the whole split]."""

  def __init__(self, labeled: np.ndarray, size: int, global_batch: int, ratio: int, seed: int,
               stage: int):
    if global_batch % (1 + ratio):
      raise ValueError(f"labeled_unlabeled sampler: batch_size {global_batch} is not a multiple of "
                       f"1 + ratio = {1 + ratio}.")
    self.labeled_batch = global_batch // (1 + ratio)
    labeled = np.asarray(labeled, np.int64)
    reps = -(-self.labeled_batch // len(labeled))
    self.labeled = Epochs(np.tile(labeled, reps), self.labeled_batch, seed, stage, stream=1)
    self.unlabeled = Epochs(np.arange(size), global_batch - self.labeled_batch, seed, stage,
                            stream=2)

  def indices(self, step: int) -> np.ndarray:
    return np.concatenate([self.labeled.indices(step), self.unlabeled.indices(step)])


def check(config: Mapping) -> str:
  """The sampler name of `config`, after checking its options."""
  name = config.get("name", "epochs")
  if name not in OPTIONS:
    raise KeyError(f"Unknown sampler {name!r}; known: {', '.join(sorted(OPTIONS))}.")
  unknown_options([k for k in config if k != "name"], OPTIONS[name], f"{name!r} sampler")
  return name


def build(config: Mapping, *, size: int, global_batch: int, seed: int, stage: int,
          labels: Callable[[str], np.ndarray], index_list: np.ndarray | None = None):
  """The sampler `config` names for `stage`; `labels(field)` reads a label per example."""
  name = check(config)
  if name == "epochs":
    return Epochs(np.arange(size), global_batch, seed, stage)
  if name == "index_list":
    if index_list is None:
      raise RuntimeError(f"Stage {stage} samples from an index list, and none was set: the task "
                         f"must call set_index_list({stage}, indices) at the stage start.")
    index_list = np.asarray(index_list, np.int64)
    if index_list.size and (index_list.min() < 0 or index_list.max() >= size):
      raise ValueError(f"The index list of stage {stage} has indices outside [0, {size}).")
    return Epochs(index_list, global_batch, seed, stage)
  field = config.get("label", "label")
  if name == "labeled_unlabeled":
    if config.get("labeled_file"):
      source = config.get("source_index")
      labeled = read_labeled_file(config["labeled_file"], labels(source) if source else None)
    elif config.get("num_labeled"):
      labeled = labeled_subset(labels(field), int(config["num_labeled"]), seed)
    else:
      raise KeyError("The labeled_unlabeled sampler needs num_labeled or labeled_file.")
    return LabeledUnlabeled(labeled, size, global_batch, int(config.get("ratio", 7)), seed, stage)
  if name == "pk":
    if "k" not in config:
      raise KeyError("The pk sampler needs k (instances per identity).")
    return IdentityBatches(labels(field), global_batch, int(config["k"]), seed, stage)
  return ClassBalanced(labels(field), global_batch, seed, stage)

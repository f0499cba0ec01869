"""Samplers and the staged training iterator: pure in (seed, stage, step); exact resume."""
import json

import numpy as np
import pytest

from ml_pipelines import data
from ml_pipelines.data import pipeline
from ml_pipelines.data import samplers

# 10 classes with 2..40 examples each (imbalanced), 2 of them smaller than k = 4.
COUNTS = np.array([2, 3, 5, 8, 12, 16, 20, 25, 30, 40])
LABELS = np.repeat(np.arange(10), COUNTS).astype(np.int32)


def _dataset(labels=LABELS):
  return data.Dataset(data.ArraySource({"x": np.arange(len(labels), dtype=np.float32),
                                        "label": labels}),
                      {"x": ((), np.float32), "label": ((), np.int32)})


CONFIGS = {"epochs": {"name": "epochs"}, "pk": {"name": "pk", "k": 4},
           "class_balanced": {"name": "class_balanced"}, "index_list": {"name": "index_list"}}
INDEX_LIST = np.arange(0, len(LABELS), 3)


def _batches(name, seed, stage=0, **kw):
  stages = [(0, {"name": "epochs"}), (7, CONFIGS[name])] if stage else [(0, CONFIGS[name])]
  b = pipeline.TrainBatches(_dataset(), 16, seed, stages=stages, **kw)
  if name == "index_list":
    b.set_index_list(stage, INDEX_LIST)
  return b


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sampler_is_a_pure_function_of_seed_stage_and_step(name):
  first = 7  # second stage starts at step 7: its sampler sees step - 7
  a, b = _batches(name, seed=1, stage=1), _batches(name, seed=1, stage=1)
  steps = [first + s for s in (30, 0, 5, 31, 1)]  # out of order, across epochs
  got = {s: a.global_indices(s) for s in steps}
  for s in reversed(steps):
    np.testing.assert_array_equal(b.global_indices(s), got[s])
    assert got[s].shape == (16,)
  # the stage's step-in-stage s equals the same sampler used as stage 1 from step 7 on
  direct = samplers.build(CONFIGS[name], size=len(LABELS), global_batch=16, seed=1, stage=1,
                          labels=lambda f: LABELS, index_list=INDEX_LIST)
  np.testing.assert_array_equal(direct.indices(5), got[first + 5])
  other_seed, other_stage = _batches(name, seed=2, stage=1), _batches(name, seed=1, stage=0)
  assert not np.array_equal(other_seed.global_indices(first), got[first])
  assert not np.array_equal(other_stage.global_indices(0), got[first])


def test_pk_batches_hold_p_identities_times_k_instances():
  b = _batches("pk", seed=0)
  seen = []
  for step in range(6):  # 10 identities / P=4 -> 2 steps per identity epoch
    idx = b.global_indices(step)
    groups = LABELS[idx].reshape(4, 4)
    assert (groups == groups[:, :1]).all()  # rows grouped by identity, K = 4 each
    assert len(set(groups[:, 0])) == 4  # P = 4 distinct identities
    for g, ids in zip(groups[:, 0], idx.reshape(4, 4)):
      if COUNTS[g] >= 4:  # enough instances: drawn without replacement
        assert len(set(ids.tolist())) == 4
    seen.append(groups[:, 0])
  for epoch in range(3):  # no identity twice within an identity epoch
    ids = np.concatenate(seen[2 * epoch:2 * epoch + 2])
    assert len(set(ids.tolist())) == 8


def test_class_balanced_frequencies_are_uniform_over_classes():
  b = _batches("class_balanced", seed=0)
  idx = np.concatenate([b.global_indices(s) for s in range(500)])  # 8000 draws
  freq = np.bincount(LABELS[idx], minlength=10) / len(idx)
  # binomial std of each frequency: sqrt(0.1 * 0.9 / 8000) = 0.0034; 5 sigma
  np.testing.assert_allclose(freq, 0.1, atol=0.017)
  # whereas the data itself is far from uniform (2 vs 40 examples)
  assert COUNTS.min() / COUNTS.sum() < 0.02
  small = idx[LABELS[idx] == 0]  # the two examples of class 0 both appear
  assert set(small.tolist()) == {0, 1}


def test_index_list_yields_only_listed_indices_and_every_one_per_epoch():
  b = _batches("index_list", seed=0)
  steps_per_epoch = len(INDEX_LIST) // 16
  epoch = np.concatenate([b.global_indices(s) for s in range(steps_per_epoch)])
  assert set(epoch.tolist()) <= set(INDEX_LIST.tolist())
  assert len(set(epoch.tolist())) == len(epoch)  # a permutation, remainder dropped
  with pytest.raises(RuntimeError, match=r"set_index_list\(0, indices\)"):
    pipeline.TrainBatches(_dataset(), 16, 0, stages=[(0, {"name": "index_list"})]).indices(0)
  with pytest.raises(ValueError, match="not an index list"):
    _batches("epochs", seed=0).set_index_list(0, INDEX_LIST)
  short = _batches("index_list", seed=0)
  short.set_index_list(0, INDEX_LIST[:15])
  with pytest.raises(ValueError, match="fewer than batch_size 16"):
    short.indices(0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_process_rows_concatenate_to_the_global_batch(name):
  whole = _batches(name, seed=3)
  parts = [_batches(name, seed=3, process_index=p, process_count=4) for p in range(4)]
  for step in (0, 3, 9):
    np.testing.assert_array_equal(whole.global_indices(step),
                                  np.concatenate([p.indices(step) for p in parts]))


def test_unknown_sampler_options_name_the_valid_ones():
  with pytest.raises(KeyError, match="Did you mean 'k'"):
    pipeline.TrainBatches(_dataset(), 16, 0, stages=[(0, {"name": "pk", "kk": 4})])
  with pytest.raises(KeyError, match="Unknown sampler 'pq'"):
    pipeline.TrainBatches(_dataset(), 16, 0, stages=[(0, {"name": "pq"})])


def _augmenting_dataset():
  ds = _dataset()
  return data.Dataset(ds.source, ds.element_spec,
                      preprocess=lambda ex, rng: {**ex, "x": np.float32(rng.random())})


def test_state_round_trip_mid_stage_with_an_index_list_matches_an_uninterrupted_run():
  stages = [(0, {"name": "epochs"}), (5, {"name": "index_list"}), (12, {"name": "pk", "k": 4})]

  def run(it, steps, lists):
    out = []
    for step in steps:
      if step in lists:  # the task's stage-start hook
        it.set_index_list(*lists[step])
      out.append(next(it))
    return out

  lists = {5: (1, INDEX_LIST)}
  make = lambda: pipeline.train_iterator(_augmenting_dataset(), 16, 7, stages=stages)
  whole = run(make(), range(16), lists)
  first = make()
  run(first, range(8), lists)
  state = first.get_state()
  assert state["next_index"] == 8 and state["index_lists"] == {"1": INDEX_LIST.tolist()}
  resumed = make()
  resumed.set_state(json.loads(json.dumps(state)))  # through a JSON checkpoint
  rest = run(resumed, range(8, 16), lists)
  for a, b in zip(whole[8:], rest):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert set(np.concatenate([w["index"] for w in whole[5:12]]).tolist()) <= set(INDEX_LIST)
  assert not set(np.concatenate([w["index"] for w in whole[:5]]).tolist()) <= set(INDEX_LIST)


class _CountingSource:
  """A source without arrays (like ArrayRecord or TFDS): labels must be read by iterating it."""

  def __init__(self, arrays):
    self.inner, self.reads = data.ArraySource(arrays), 0

  def __len__(self):
    return len(self.inner)

  def __getitem__(self, i):
    self.reads += 1
    return self.inner[i]


def test_labels_of_a_lazy_source_are_read_once_for_every_stage():
  source = _CountingSource(_dataset().source.arrays)
  ds = data.Dataset(source, _dataset().element_spec)
  stages = [(0, {"name": "pk", "k": 4}), (3, {"name": "class_balanced"})]
  lazy = pipeline.TrainBatches(ds, 16, 5, stages=stages)
  eager = pipeline.TrainBatches(_dataset(), 16, 5, stages=stages)
  for step in (0, 4, 2, 7):
    np.testing.assert_array_equal(lazy.global_indices(step), eager.global_indices(step))
  assert source.reads == len(LABELS)  # one pass, shared by both stages

"""Multi-stage runs: the stage is a function of the step, each stage trains its own partition with
its own optimizer, and a run interrupted before, at, just after a boundary or mid-stage resumes to
exactly the uninterrupted result."""
import jax
import numpy as np
import pytest

from ml_pipelines import tasks
from ml_pipelines import train
from ml_pipelines.trainer import stages as stages_lib
from tests.test_trainer import interrupted, small_config


@tasks.register("classification_first_digits")
class FirstDigits(tasks.get("classification")):
  """Stage 1 samples only digits 0-4: the index list a stage-start hook hands the pipeline."""

  def start_stage(self, env, state, stage):
    if stage.index == 1:
      labels = env.dataset(self.config.data.train_split).source.arrays["label"]
      env.set_index_list(1, np.flatnonzero(labels < 5))
    return state


def three_stages(**kw):
  c = small_config(**{"total_steps": 12, "checkpoint_every": 1, "log_every": 1, **kw})
  c.optimizer.warmup_steps = 0
  c.task.name = "classification_first_digits"
  c.stages = (
      dict(name="head", steps=4, trainable="^fc2/", optimizer=dict(learning_rate=0.05)),
      dict(name="all", steps=4, optimizer=dict(schedule="constant"),
           data=dict(sampler=dict(name="index_list"))),
      dict(name="all_slow", steps=4, reset_optimizer=False,
           optimizer=dict(schedule="constant", learning_rate=1e-3)),
  )
  return c


def _params(state):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(train.Env.variables(state)[0])[0]}


def test_stage_table_is_checked_and_a_function_of_the_step():
  c = three_stages()
  stages = stages_lib.build(c)
  assert [(s.name, s.start, s.end, s.count_offset) for s in stages] == [
      ("head", 0, 4, 0), ("all", 4, 8, 0), ("all_slow", 8, 12, 4)]
  assert [stages_lib.index_at(stages, t) for t in (0, 3, 4, 7, 8, 11, 12)] == [0, 0, 1, 1, 2, 2, 2]
  assert stages[0].config.optimizer.learning_rate == 0.05
  assert stages[1].config.optimizer.learning_rate == c.optimizer.learning_rate
  c.total_steps = 10
  with pytest.raises(ValueError, match="total_steps=10 but the stages add up to 12"):
    stages_lib.build(c)
  c = three_stages()
  c.stages = (dict(name="x", steps=12, trainabel="fc"),)
  with pytest.raises(KeyError, match="'trainabel'.*'trainable'"):
    stages_lib.build(c)


def test_stages_train_their_partition_and_reset_the_optimizer(tmp_path):
  c = three_stages(checkpoint_every=0)
  c.total_steps, c.stages = 4, c.stages[:1]
  after_head = _params(train.train_and_evaluate(c, str(tmp_path / "a"))["state"])
  c = three_stages(checkpoint_every=0)
  c.total_steps, c.stages = 8, c.stages[:2]
  result = train.train_and_evaluate(c, str(tmp_path / "b"))
  state = result["state"]
  # Stage "all" trains every parameter from a fresh Adam state (count 4 updates, not 8).
  counts = [int(x) for x in jax.tree_util.tree_leaves(state["opt_state"]) if x.ndim == 0
            and np.issubdtype(x.dtype, np.integer)]
  assert counts and set(counts) == {4}
  final = _params(state)
  assert all(np.abs(final[k] - after_head[k]).max() > 0 for k in final if "kernel" in k)
  # Stage "head" moved only the head.
  c = three_stages(checkpoint_every=0)
  init = _params(train.Run(c, str(tmp_path / "c")).initial_state(
      train.Run(c, str(tmp_path / "c")).init_variables()))
  assert all((np.array_equal(after_head[k], init[k]) != k.startswith("fc2/")) for k in init)
  # The learning rate logged per stage: 0.05 (head), then the base rate.
  rows = [__import__("json").loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
  lrs = [r["train/learning_rate"] for r in rows if "train/learning_rate" in r]
  assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(c.optimizer.learning_rate)


def test_interrupted_anywhere_resumes_bit_identical(tmp_path):
  reference = _params(train.train_and_evaluate(three_stages(), str(tmp_path / "ref"))["state"])
  workdir = tmp_path / "run"
  # Each stop leaves the newest checkpoint at: 3 (just before the first boundary), 4 (at it,
  # saved in stage 2's layout, with stage 2's index list), 5 (just after it), 9 (inside the stage
  # that keeps its optimizer).
  for stop_after in (4, 5, 6, 10):
    interrupted(three_stages(), workdir, stop_after)
  resumed = _params(train.train_and_evaluate(three_stages(), str(workdir))["state"])
  assert resumed.keys() == reference.keys()
  for k in reference:
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)

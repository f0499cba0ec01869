"""Trainable and frozen parameters: frozen weights stay bit-identical, carry no gradient and no
optimizer state, and the partition survives a resume and an fsdp mesh (8 CPU devices, conftest)."""
import jax
import numpy as np
import pytest

from ml_pipelines import train
from ml_pipelines.trainer import partition
from tests.test_trainer import interrupted, small_config

HEAD = "^fc2/"


def _initial_params(c):
  import models
  from flax import nnx
  return nnx.to_pure_dict(nnx.state(models.build(c.model, seed=c.seed), nnx.Param))


def _flat(tree):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_split_and_merge_round_trip():
  tree = {"a": {"k": 1, "b": 2}, "c": 3}
  mask = partition.trainable_mask(tree, trainable="^a/", freeze="/b$")
  assert mask == {"a": {"k": True, "b": False}, "c": False}
  yes, no = partition.split(tree, mask)
  assert yes == {"a": {"k": 1}} and no == {"a": {"b": 2}, "c": 3}
  assert partition.merge(yes, no) == tree


@pytest.mark.parametrize("freeze_batch_stats", [True, False])
def test_frozen_backbone_is_bit_identical_and_has_no_optimizer_state(tmp_path, freeze_batch_stats):
  c = small_config(total_steps=6, checkpoint_every=0)
  c.optimizer.trainable = HEAD
  c.optimizer.freeze_batch_stats = freeze_batch_stats
  state = train.train_and_evaluate(c, str(tmp_path))["state"]
  init = _flat(_initial_params(c))
  trained = _flat(train.Env.variables(state)[0])
  assert set(_flat(state["params"])) == {"fc2/kernel", "fc2/bias"}
  for k, v in trained.items():
    if k.startswith("fc2/"):
      assert np.abs(v - init[k]).max() > 1e-4, k  # the head trained
    else:
      np.testing.assert_array_equal(v, init[k], err_msg=k)  # the backbone did not move
  # Adam's two moments for the trainable parameters, nothing for the frozen ones.
  head_bytes = sum(v.nbytes for v in _flat(state["params"]).values())
  opt_leaves = jax.tree_util.tree_leaves(state["opt_state"])
  assert sum(x.nbytes for x in opt_leaves if x.ndim) == 2 * head_bytes
  # Frozen BatchNorm layers keep their running statistics only with freeze_batch_stats.
  mean = np.asarray(state["rest"]["bn1"]["mean"])
  assert (np.abs(mean).max() == 0.0) == freeze_batch_stats


def test_frozen_backbone_step_needs_less_memory_than_full_finetuning():
  """Compiled train-step memory (XLA's memory analysis): freezing all but the head saves at least
  the frozen weights' gradient (and their Adam moments come out of the arguments)."""
  def footprint(trainable):
    c = small_config(**{"model.width": 32, "model.hidden": 256})
    c.optimizer.trainable = trainable
    run = train.Run(c, "/tmp/unused_workdir")
    m = run.lower_train_step().compile().memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes, run
  full, run = footprint(None)
  frozen, _ = footprint(HEAD)
  params = _flat(run.variable_shapes["params"])
  frozen_bytes = sum(np.prod(v.shape) * 4 for k, v in params.items() if not k.startswith("fc2/"))
  assert full - frozen >= frozen_bytes, (full, frozen, frozen_bytes)


def test_partition_resumes_and_runs_under_fsdp(tmp_path):
  def cfg(**kw):
    c = small_config(total_steps=8, checkpoint_every=2, **kw)
    c.optimizer.trainable = "^(fc1|fc2)/"
    return c
  ref = train.train_and_evaluate(cfg(), str(tmp_path / "ref"))["state"]
  # The same run stopped after step 5 (newest checkpoint: 4), resumed on a data x fsdp mesh.
  interrupted(cfg(), tmp_path / "resumed", stop_after=5)
  out = train.train_and_evaluate(cfg(**{"mesh.data": 4, "mesh.fsdp": 2}),
                                 str(tmp_path / "resumed"))["state"]
  assert int(out["step"]) == 8
  assert out["params"]["fc1"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
  a, b = _flat(train.Env.variables(ref)[0]), _flat(train.Env.variables(out)[0])
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-6, err_msg=k)

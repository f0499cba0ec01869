"""The trainer's guards and building blocks, in-process (8 CPU devices from conftest)."""
import glob
import os

import jax
import ml_collections
import numpy as np
import optax
import pytest

from ml_pipelines.trainer import checkpoint as checkpoint_lib
from ml_pipelines.trainer import config as config_lib
from ml_pipelines import data
from ml_pipelines import tasks
from ml_pipelines.data import pipeline as input_pipeline
from ml_pipelines.trainer import sharding
from ml_pipelines import train
from optim import chain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/classification/digits_cnn.py")


def small_config(**overrides):
  c = config_lib.load(CONFIG)
  c.model.width, c.model.hidden = 8, 16
  c.batch_size, c.eval_batch_size = 32, 64
  c.log_every, c.eval_every, c.checkpoint_every = 5, 0, 10
  c.total_steps = 20
  c.optimizer.warmup_steps = 2
  for k, v in overrides.items():
    config_lib.override(c, [f"{k}={v!r}"])
  return c


class _Stop(Exception):
  pass


def interrupted(config, workdir, stop_after: int):
  """Runs `config` in `workdir` and dies right after step `stop_after` (before that step's
  checkpoint is written), as a killed process would; earlier checkpoints stay."""
  cls = tasks.get(config.task.name)
  original = cls.after_step

  def dying(self, env, state, step):
    if step == stop_after:
      raise _Stop(step)
    return original(self, env, state, step)
  cls.after_step = dying
  try:
    with pytest.raises(_Stop):
      train.train_and_evaluate(config, str(workdir))
  finally:
    cls.after_step = original


# --- guards -------------------------------------------------------------------------------------
def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
  train.train_and_evaluate(small_config(), str(tmp_path))
  latest = tmp_path / "checkpoints" / "20"
  files = [f for f in glob.glob(str(latest / "state" / "**" / "*"), recursive=True)
           if os.path.isfile(f) and os.path.getsize(f) > 0]
  assert files
  for f in files:  # truncate every array file of the newest checkpoint
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 3)
  capsys.readouterr()
  result = train.train_and_evaluate(small_config(), str(tmp_path))
  captured = capsys.readouterr()
  out = captured.out
  assert f"checkpoint {latest} is unreadable" in out
  assert sum("unreadable" in line for line in out.splitlines()) == 1  # the one warning, once
  assert "Traceback" not in captured.err and "Event loop is closed" not in captured.err
  assert "Resumed from step 10" in out
  assert int(result["state"]["step"]) == 20
  assert (tmp_path / "corrupt_checkpoints" / "20").is_dir()


class _PoisonedDigits:
  """digits with a NaN image at training position 0 of step 3 (so steps 0-2 are fine)."""

  def __init__(self, ds, bad_index):
    self.ds, self.bad = ds, bad_index

  def __len__(self):
    return len(self.ds.source)

  def __getitem__(self, i):
    ex = dict(self.ds.source[i])
    if i == self.bad:
      ex["image"] = np.full_like(ex["image"], np.nan)
    return ex


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, monkeypatch):
  c = small_config(total_steps=30, checkpoint_every=2, log_every=4)
  real = data.get("digits")(c.data, "train")
  batches = input_pipeline.TrainBatches(real, c.batch_size, c.seed)
  bad_index = int(batches.indices(5)[0])
  poisoned = data.Dataset(_PoisonedDigits(real, bad_index), real.element_spec)
  monkeypatch.setitem(data._REGISTRY._entries, "digits_poisoned", lambda cfg, split: (
      poisoned if split == "train" else data.get("digits")(cfg, split)))
  c.data.name = "digits_poisoned"
  with pytest.raises(train.NonFiniteLossError) as err:
    train.train_and_evaluate(c, str(tmp_path))
  message = str(err.value)
  assert "at step 5 " in message
  assert f"last good checkpoint is step 4 in {tmp_path}" in message
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps and max(steps) <= 5
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  for step in steps:  # every saved state is finite
    restored = ckpt.manager.restore(step, args=checkpoint_lib.ocp.args.Composite(
        state=checkpoint_lib.ocp.args.StandardRestore()))["state"]
    for leaf in jax.tree_util.tree_leaves(restored["params"]):
      assert np.isfinite(np.asarray(leaf)).all()
  ckpt.close()


def test_unknown_config_keys_name_the_closest_valid_ones(tmp_path):
  c = config_lib.load(CONFIG)
  with pytest.raises(KeyError, match="'learning_rate'"):
    config_lib.override(c, ["optimizer.learnig_rate=0.1"])
  with pytest.raises(KeyError, match="'total_steps'"):
    config_lib.override(c, ["total_step=3"])
  c.totl_steps = 3
  with pytest.raises(KeyError, match="Did you mean 'total_steps'"):
    config_lib.check_keys(c)
  c = small_config()
  c.model.widht = 3
  with pytest.raises(KeyError, match="Did you mean 'width'"):
    train.train_and_evaluate(c, str(tmp_path))


def test_batch_size_that_does_not_split_over_the_mesh_is_refused(tmp_path):
  c = small_config()  # 8 CPU devices, mesh data=-1 -> 8 batch shards
  c.batch_size = 12
  with pytest.raises(ValueError, match=r"batch_size=12 does not divide over the 8 batch shards"):
    train.train_and_evaluate(c, str(tmp_path))
  c = small_config()
  c.eval_batch_size, c.mesh.data, c.mesh.fsdp = 20, 2, 4
  with pytest.raises(ValueError, match=r"eval_batch_size=20 .* multiple of 8"):
    train.train_and_evaluate(c, str(tmp_path))


def test_incompatible_checkpoint_is_refused_naming_keys(tmp_path):
  train.train_and_evaluate(small_config(total_steps=10), str(tmp_path))
  with pytest.raises(checkpoint_lib.IncompatibleCheckpointError,
                     match=r"model.hidden: checkpoint 16 vs config 32"):
    train.train_and_evaluate(small_config(total_steps=20, **{"model.hidden": 32}),
                             str(tmp_path))


def test_batch_of_wrong_shape_or_dtype_names_what_was_expected(tmp_path, monkeypatch):
  real = data.get("digits")(None, "train")
  wrong = data.Dataset(data.ArraySource({"image": real.source.arrays["image"][:, :7],
                                         "label": real.source.arrays["label"]}),
                       real.element_spec)
  monkeypatch.setitem(data._REGISTRY._entries, "digits_cropped", lambda cfg, split: wrong)
  c = small_config()
  c.data.name = "digits_cropped"
  with pytest.raises(ValueError, match=r"'image' has shape \(32, 7, 8, 1\).*expected shape "
                                       r"\(32, 8, 8, 1\) dtype float32"):
    train.train_and_evaluate(c, str(tmp_path))
  batch = {"image": np.zeros((4, 8, 8, 1), np.float64), "label": np.zeros((4,), np.int32)}
  with pytest.raises(ValueError, match="dtype float64; expected shape .* dtype float32"):
    input_pipeline.check_batch(batch, real.element_spec, 4)


def test_missing_dataset_directory_names_path_and_prepare_command(tmp_path):
  cfg = ml_collections.ConfigDict({"data_dir": str(tmp_path / "nowhere")})
  with pytest.raises(FileNotFoundError) as err:
    data.get("cifar10")(cfg, "train")
  assert str(tmp_path / "nowhere") in str(err.value)
  assert "download_and_prepare" in str(err.value)
  from ml_pipelines.data import records
  with pytest.raises(FileNotFoundError, match="python -m prep"):
    records.RecordSource(str(tmp_path / "none"), "train", prepare_hint="python -m prep")


# --- building blocks ----------------------------------------------------------------------------
def test_reference_task_reaches_sensible_accuracy(tmp_path):
  c = config_lib.load(CONFIG)
  c.total_steps, c.eval_every, c.checkpoint_every = 300, 300, 300
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result["eval/accuracy"] > 0.95
  assert os.path.getsize(tmp_path / "curves.png") > 10_000
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert any('"eval/accuracy"' in line for line in lines)


def test_evaluation_sees_every_example_exactly_once():
  ds = data.Dataset(data.ArraySource({"x": np.arange(10, dtype=np.float32)}),
                    {"x": ((), np.float32)})
  batches = list(input_pipeline.eval_batches(ds, 4))
  assert len(batches) == 3
  seen = np.concatenate([b["index"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(10))
  assert batches[-1]["mask"].tolist() == [True, True, False, False]


def test_process_slices_of_a_training_batch_reassemble_the_global_batch():
  ds = data.Dataset(data.ArraySource({"x": np.arange(50, dtype=np.float32)}),
                    {"x": ((), np.float32)})
  whole = input_pipeline.TrainBatches(ds, 8, seed=3)
  parts = [input_pipeline.TrainBatches(ds, 8, seed=3, process_index=p, process_count=2)
           for p in range(2)]
  for step in (0, 5, 6, 13):  # 6 steps per epoch: crosses an epoch boundary
    np.testing.assert_array_equal(whole.indices(step),
                                  np.concatenate([p.indices(step) for p in parts]))
  epoch0 = np.concatenate([whole.indices(s) for s in range(6)])
  assert len(set(epoch0.tolist())) == 48  # no repeats within an epoch


def test_sharding_rules():
  mesh = sharding.build_mesh({"data": 2, "fsdp": 2, "model": 2})
  tree = {"enc": {"kernel": np.zeros((3, 6, 4)), "bias": np.zeros((5,))},
          "head": {"kernel": np.zeros((4, 8))}}
  sh = sharding.tree_shardings(tree, (("head/kernel", (None, "model")), ("kernel$", "fsdp")),
                               mesh)
  assert sh["enc"]["kernel"].spec == jax.sharding.PartitionSpec(None, "fsdp", None)
  assert sh["enc"]["bias"].spec == jax.sharding.PartitionSpec()
  assert sh["head"]["kernel"].spec == jax.sharding.PartitionSpec(None, "model")
  with pytest.raises(ValueError, match=r"dimension 5 of 'enc/bias' \(shape \(5,\)\) does not "
                                       r"divide by mesh axes model of size 2"):
    sharding.tree_shardings(tree, (("bias", ("model",)),), mesh)
  assert dict(sharding.build_mesh({"data": -1, "fsdp": 4, "model": 1}).shape) == {
      "data": 2, "fsdp": 4, "model": 1}
  with pytest.raises(ValueError, match="do not divide"):
    sharding.build_mesh({"data": -1, "fsdp": 3, "model": 1})


def test_optimizer_chain_matches_pytorch_style_updates():
  params = {"conv": {"kernel": np.array([1.0, -2.0], np.float32)},
            "head": {"bias": np.array([0.5], np.float32)}}
  grads = {"conv": {"kernel": np.array([0.1, 0.2], np.float32)},
           "head": {"bias": np.array([-0.3], np.float32)}}
  c = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, momentum=0.9,
                                     weight_decay=0.01, weight_decay_mask="kernel$",
                                     transforms=()))
  tx = chain.build_chain(c, total_steps=10)
  state = tx.init(params)
  p, buf = dict(params), None
  for _ in range(2):  # torch.optim.SGD: g += wd*w; buf = m*buf + g; w -= lr*buf
    updates, state = tx.update(grads, state, params)
    g = grads["conv"]["kernel"] + 0.01 * params["conv"]["kernel"]
    buf = g if buf is None else 0.9 * buf + g
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["conv"]["kernel"], p["conv"]["kernel"] - 0.1 * buf,
                               rtol=1e-6)
    p = params
  # no decay outside the mask: plain momentum SGD on the bias
  np.testing.assert_allclose(params["head"]["bias"], 0.5 - 0.1 * (-0.3) * (1 + 1.9), rtol=1e-6)
  c = ml_collections.ConfigDict(dict(name="adamw", learning_rate=0.1, weight_decay=0.5,
                                     b1=0.9, b2=0.999, eps=1e-8, transforms=()))
  tx = chain.build_chain(c, total_steps=10)
  w = np.array([2.0], np.float32)
  updates, _ = tx.update({"w": np.array([0.4], np.float32)}, tx.init({"w": w}), {"w": w})
  # First AdamW step: m^/sqrt(v^) = sign(g) -> w - lr*(1 + wd*w)
  np.testing.assert_allclose(w + updates["w"], w - 0.1 * (1.0 + 0.5 * w), rtol=1e-5)


def test_checkpointer_keeps_last_n_and_every_kth(tmp_path):
  cfg = small_config()
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2, keep_period=4)
  for step in range(1, 11):
    ckpt.save(step, {"w": np.full((2,), step, np.float32)}, {"next_index": step}, cfg)
  ckpt.wait()
  assert sorted(ckpt.manager.all_steps()) == [4, 8, 9, 10]
  abstract = {"w": jax.ShapeDtypeStruct((2,), np.float32,
                                        sharding=sharding.replicated(sharding.build_mesh(
                                            {"data": -1})))}
  restored = ckpt.restore_latest(abstract, cfg)
  assert restored.step == 10 and restored.data_state == {"next_index": 10}
  np.testing.assert_array_equal(np.asarray(restored.state["w"]), [10.0, 10.0])
  ckpt.close()


def test_named_loss_terms_get_their_own_gradients(tmp_path, monkeypatch):
  """A task naming `grad_terms` makes the trainer pass `term_grads`; check them against jax.grad."""
  import jax.numpy as jnp
  import optim
  from flax import nnx
  from ml_pipelines import tasks
  seen = {}

  class TwoTerms(tasks.get("classification")):
    def loss(self, model, batch, rng, extra, step):
      logits = model(batch["image"])
      a = jnp.mean(logits[:, 0] ** 2)
      b = jnp.mean(jnp.sin(logits[:, 1]))
      return a + 2 * b, {"grad_terms": {"a": a, "b": b}}

  def recorder(*, param_groups):
    def update(updates, state, params=None, *, term_grads, **extra):
      diff = jax.tree_util.tree_map(lambda g, ga, gb: jnp.max(jnp.abs(g - ga - 2 * gb)),
                                    updates, term_grads["a"], term_grads["b"])
      jax.debug.callback(lambda d, n: seen.update(diff=float(d), norm_b=float(n)),
                         jnp.max(jnp.stack(jax.tree_util.tree_leaves(diff))),
                         optax.tree.norm(term_grads["b"]))
      return updates, state
    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)

  monkeypatch.setitem(tasks._REGISTRY._entries, "two_terms", TwoTerms)
  monkeypatch.setitem(optim._REGISTRY._entries, "recorder", recorder)
  c = small_config(total_steps=1, checkpoint_every=0, **{"model.dropout": 0.0})
  c.task.name = "two_terms"
  c.optimizer.transforms = ("recorder",)
  c.optimizer.clip_grad_norm = None  # the recorder must see the raw total gradient
  seen.clear()
  train.train_and_evaluate(c, str(tmp_path))
  # The total gradient equals grad(a) + 2 grad(b), and grad(b) is not trivially zero.
  assert seen["diff"] < 1e-5
  assert seen["norm_b"] > 1e-4


def test_parameter_ema_follows_the_trained_trajectory(tmp_path):
  """ema_decay=d keeps ema_t = d ema_{t-1} + (1 - d) p_t from ema_0 = p_0; recomputed from
  the parameters of 1- and 2-step runs (the trainer is deterministic) and the initial ones."""
  d = 0.6
  cfg = lambda steps, **kw: small_config(total_steps=steps, checkpoint_every=0, **kw)
  p1 = train.train_and_evaluate(cfg(1), str(tmp_path / "a"))["state"]["params"]
  p2 = train.train_and_evaluate(cfg(2), str(tmp_path / "b"))["state"]["params"]
  c_ema = cfg(2)
  c_ema.ema_decay = d
  result = train.train_and_evaluate(c_ema, str(tmp_path / "c"))
  import models
  from flax import nnx
  c = cfg(1)
  p0 = nnx.to_pure_dict(nnx.state(models.build(c.model, seed=c.seed), nnx.Param))
  expected = jax.tree_util.tree_map(
      lambda a, b, e: d * (d * np.asarray(a) + (1 - d) * np.asarray(b)) + (1 - d) * np.asarray(e),
      p0, p1, p2)
  got = jax.tree_util.tree_map(np.asarray, result["state"]["ema_params"])
  jax.tree_util.tree_map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6),
                         got, expected)
  np.testing.assert_allclose(jax.tree_util.tree_leaves(result["state"]["params"])[0],
                             jax.tree_util.tree_leaves(p2)[0], rtol=1e-6)
  assert "eval/ema_accuracy" in result and 0.0 <= result["eval/ema_accuracy"] <= 1.0


def test_all_finite_sees_any_non_finite_entry():
  import jax.numpy as jnp
  tree = {"a": jnp.ones((3, 4)), "b": {"c": jnp.arange(5.0)}}
  assert bool(train.all_finite(tree))
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert not bool(train.all_finite({**tree, "b": {"c": jnp.arange(5.0).at[3].set(bad)}}))


def test_task_state_that_repeats_an_array_still_trains(tmp_path, monkeypatch):
  """A hook may put one array in two leaves (a teacher snapshot of the parameters, one zeros array
  for several counters); the donated train step gets distinct buffers anyway."""
  import jax.numpy as jnp

  class Repeats(tasks.get("classification")):
    def init_extra(self, env, rng, params):
      zeros = jnp.zeros((3,))
      return {"a": zeros, "b": zeros}

    def start_stage(self, env, state, stage):
      return {**state, "extra": {**state["extra"], "a": state["extra"]["b"]}}

  monkeypatch.setitem(tasks._REGISTRY._entries, "repeats", Repeats)
  c = small_config(total_steps=2, checkpoint_every=0)
  c.task.name = "repeats"
  train.train_and_evaluate(c, str(tmp_path))

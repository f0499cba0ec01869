"""The one trainer: any method, from a config, sharded over a mesh, resumable after preemption.

    python -m ml_pipelines.train --config=configs/classification/digits_cnn.py --workdir=/tmp/digits \
        [--config.total_steps=500 ...] [--cpu_devices=8]
    multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I, or set
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or --distributed=auto on TPU/SLURM.

The flow, top to bottom (see docs/extending.md for the extension points):
  1. config -> mesh -> task -> datasets -> model split once into (graphdef, params, rest)
  2. optax chain; train state {step, params, rest, opt_state, rng, extra, bad_step}, sharded by rules
  3. restore the newest readable checkpoint of the workdir if there is one (onto any mesh)
  4. loop: batch -> jitted, donated train_step -> task.after_step -> log / eval / checkpoint
  5. final evaluation, curves PNG, summary
"""
from __future__ import annotations

import argparse
import functools
import os
import signal  # [ux]
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
import optim
from ml_pipelines.trainer import checkpoint as checkpoint_lib
from ml_pipelines.trainer import init_from
from ml_pipelines.trainer import preemption  # [ux]
from ml_pipelines.trainer import config as config_lib
from ml_pipelines import data
from ml_pipelines.data import pipeline as input_pipeline
from ml_pipelines.trainer import sharding
from ml_pipelines import tasks
from ml_pipelines.trainer.metrics_writer import MetricsWriter
from optim.chain import schedule as lr_schedule


class NonFiniteLossError(FloatingPointError):
  pass


# --- PRNG keys inside model state (dropout streams) are stored as raw key data. ---------------
def _is_key(x) -> bool:
  return jnp.issubdtype(getattr(x, "dtype", None) or np.float32, jax.dtypes.prng_key)


def _store_keys(tree):
  return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _load_keys(tree, key_mask):
  return jax.tree_util.tree_map(lambda x, k: jax.random.wrap_key_data(x) if k else x,
                                tree, key_mask)


class Env:
  """What a task's host-side hooks may use: config, mesh, datasets and a whole-split `predict`."""

  def __init__(self, config, mesh, graphdef_eval, key_mask, workdir: str):
    self.config = config
    self.workdir = workdir  # where the run writes: tasks put plots and exports here
    self.mesh = mesh
    self._graphdef_eval = graphdef_eval
    self._key_mask = key_mask
    self._datasets: dict[str, data.Dataset] = {}
    self._predict_fns: dict[Any, Callable] = {}

  def dataset(self, split: str) -> data.Dataset:
    if split not in self._datasets:
      builder = data.get(self.config.data.name)
      self._datasets[split] = builder(self.config.data, split)
    return self._datasets[split]

  def predict(self, state, fn: Callable, split: str, indices=None) -> dict[str, np.ndarray]:
    """Runs jitted `fn(model_in_eval_mode, batch)` over every example of `split` once, in order."""
    if fn not in self._predict_fns:
      def apply(params, rest, batch):
        model = nnx.merge(self._graphdef_eval, params, _load_keys(rest, self._key_mask))
        out = dict(fn(model, batch))
        out["index"] = batch["index"]
        out["mask"] = batch["mask"]
        return out
      self._predict_fns[fn] = jax.jit(apply)
    apply = self._predict_fns[fn]
    dataset = self.dataset(split)
    bsh = sharding.batch_sharding(self.mesh)
    pieces = []
    for local in input_pipeline.eval_batches(dataset, self.config.eval_batch_size, indices):
      out = apply(state["params"], state["rest"], input_pipeline.to_global(local, bsh))
      pieces.append(_to_host(out))
    merged = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    keep = merged.pop("mask").astype(bool)
    return {k: v[keep] for k, v in merged.items()}


def _to_host(tree):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
  return jax.tree_util.tree_map(np.asarray, tree)


def _with_ema(init_state: Callable) -> Callable:
  """Adds `ema_params`, a copy of the initial parameters, to the state `init_state` builds."""
  def init():
    state = init_state()
    return {**state, "ema_params": jax.tree_util.tree_map(jnp.copy, state["params"])}
  return init


def _all_finite(tree) -> jax.Array:
  """One reduction over all floating leaves (a reduction per leaf costs XLA:CPU a kernel per shape,
  minutes of compile time for a transformer's few hundred shapes)."""
  leaves = [x.ravel().astype(jnp.float32) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.isfinite(jnp.concatenate(leaves))) if leaves else jnp.array(True)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns final eval metrics
  and the final `state`."""
  config_lib.check_keys(config)
  config_lib.prepare_workdir(workdir)  # [ux] a file or unwritable path: one line
  total_steps = int(config.total_steps)

  # 1. Mesh, task, data, model (split once; the mode lives in the graphdef, not in a flag).
  mesh = sharding.build_mesh(config.mesh)
  sharding.check_batch_sizes(mesh, batch_size=config.batch_size,
                             eval_batch_size=config.eval_batch_size)
  task = tasks.get(config.task.name)(config)
  train_ds = data.get(config.data.name)(config.data, config.data.train_split)

  make_model = functools.partial(models.build, config.model, seed=config.seed)
  abstract_model = nnx.eval_shape(make_model)
  abstract_model.train()
  graphdef_train, _, abstract_rest = nnx.split(abstract_model, nnx.Param, ...)
  abstract_model.eval()
  graphdef_eval = nnx.graphdef(abstract_model)
  key_mask = jax.tree_util.tree_map(_is_key, nnx.to_pure_dict(abstract_rest))
  env = Env(config, mesh, graphdef_eval, key_mask, workdir)
  env._datasets[config.data.train_split] = train_ds

  # 2. Optimizer and the sharded initial state.
  tx = optim.build(config.optimizer, total_steps)
  learning_rate = lr_schedule(config.optimizer, total_steps)
  rules = tuple(tuple(r) for r in config.sharding_rules)

  def init_state():
    model = make_model()
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    rest = _store_keys(nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))
    return {"step": jnp.zeros([], jnp.int32), "params": params, "rest": rest,
            "opt_state": tx.init(params), "rng": jax.random.PRNGKey(config.seed),
            "bad_step": jnp.full([], -1, jnp.int32)}

  ema_decay = float(config.optimizer.get("ema_decay", 0.0))
  if ema_decay:
    init_state = _with_ema(init_state)

  shapes = jax.eval_shape(init_state)
  param_sh = sharding.tree_shardings(shapes["params"], rules, mesh)
  repl = sharding.replicated(mesh)
  shardings = {"step": repl, "params": param_sh,
               "rest": sharding.tree_shardings(shapes["rest"], rules, mesh),
               "opt_state": sharding.follow_params(shapes["opt_state"], shapes["params"], param_sh,
                                                   mesh),
               "rng": repl, "bad_step": repl}
  if ema_decay:
    shardings["ema_params"] = param_sh
  state = jax.jit(init_state, out_shardings=shardings)()
  extra = task.init_extra(env, jax.random.fold_in(jax.random.PRNGKey(config.seed), 1),
                          state["params"])
  state["extra"] = jax.device_put(extra, repl)
  shardings["extra"] = jax.tree_util.tree_map(lambda _: repl, state["extra"])

  # 3. Resume from the newest readable checkpoint, onto this mesh.
  ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints,
                                     keep_period=config.get("keep_period", 0))
  abstract = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
  restored = ckpt.restore_latest(abstract, config)
  start_step = 0
  if restored is not None:
    state, start_step = restored.state, restored.step
    print(f"Resumed from step {start_step} of {ckpt.directory}", flush=True)
  elif config.get("init_from"):  # pretrained weights, once at step 0 (a resumed run has its own)
    state = init_from.apply(config.init_from, state, shardings)

  # 4. The pure, jitted, donated train step.
  def train_step(state, batch):
    step = state["step"]
    rng = jax.random.fold_in(state["rng"], step)
    rest = _load_keys(state["rest"], key_mask)

    def loss_fn(params, rest):
      model = nnx.merge(graphdef_train, params, rest)
      loss, aux = task.loss(model, batch, rng, state["extra"], step)
      return loss, (aux, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

    # One forward pass; the total loss and each named term in aux["grad_terms"] get their own
    # backward pass through the same VJP (MMPareto-style methods need per-term gradients).
    def outputs(params):
      loss, (aux, new_rest) = loss_fn(params, rest)
      return (loss, aux.get("grad_terms", {})), (aux, new_rest)

    (loss, terms), vjp_fn, (aux, new_rest) = jax.vjp(outputs, state["params"], has_aux=True)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, terms)
    (grads,) = vjp_fn((jnp.ones_like(loss), zeros))
    extra_args = dict(aux.get("tx_args", {}))
    if terms:
      extra_args["term_grads"] = {
          name: vjp_fn((jnp.zeros_like(loss), {**zeros, name: jnp.ones_like(t)}))[0]
          for name, t in terms.items()}

    def grad_fn(params):  # same batch, same RNG, batch statistics left as they were
      return jax.grad(lambda p: loss_fn(p, rest)[0])(params)

    updates, opt_state = tx.update(grads, state["opt_state"], state["params"], grad_fn=grad_fn,
                                   step=step, rng=rng, **extra_args)
    new = {"params": optax.apply_updates(state["params"], updates),
           "rest": _store_keys(new_rest), "opt_state": opt_state,
           "extra": aux.get("extra", state["extra"])}
    if ema_decay:  # model EMA (timm ModelEma, used by DeiT): ema <- d * ema + (1 - d) * params
      new["ema_params"] = jax.tree_util.tree_map(
          lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema_params"], new["params"])
    finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new["params"])
    old = {k: state[k] for k in new}
    new = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
    new.update(step=step + 1, rng=state["rng"],
               bad_step=jnp.where((state["bad_step"] < 0) & ~finite, step, state["bad_step"]))
    metrics = {"train/loss": loss, "train/learning_rate": learning_rate(step),
               **{f"train/{k}": v for k, v in aux.get("metrics", {}).items()}}
    return new, metrics

  batch_sharding = sharding.batch_sharding(mesh)
  train_step = jax.jit(train_step, in_shardings=(shardings, batch_sharding),
                       out_shardings=(shardings, repl), donate_argnums=0)
  spec = input_pipeline.batch_spec(train_ds)
  local_batch = config.batch_size // jax.process_count()
  iterator = input_pipeline.train_iterator(train_ds, config.batch_size, config.seed, start_step)
  if restored is not None and restored.data_state.get("next_index", start_step) != start_step:
    raise RuntimeError(f"Checkpoint data state {restored.data_state} does not match step "
                       f"{start_step}.")

  writer = MetricsWriter(workdir, total_steps, start_step)

  def guard(step: int):
    bad = int(state["bad_step"])
    if bad >= 0:
      ckpt.wait()
      last = ckpt.latest_step()
      where = (f"the last good checkpoint is step {last} in {ckpt.directory}" if last is not None
               else "no checkpoint was written")
      writer.close()
      raise NonFiniteLossError(f"Non-finite loss or gradient at step {bad} (checked at step "
                               f"{step}); training stopped, {where}.")

  def evaluate(step: int) -> dict[str, float]:
    metrics = {f"eval/{k}": v for k, v in task.evaluate(env, state).items()}
    if ema_decay:  # the same evaluation with the EMA parameters (batch statistics as trained)
      ema_state = {**state, "params": state["ema_params"]}
      metrics.update({f"eval/ema_{k}": v for k, v in task.evaluate(env, ema_state).items()})
    writer.write(step, metrics)
    return metrics

  pending: list[dict] = []
  eval_metrics: dict[str, float] = {}
  t_start = time.time()
  stop = preemption.StopOnSignal(sync_every=config.log_every).install()  # [ux] SIGINT/SIGTERM
  for step in range(start_step, total_steps):
    local = next(iterator)
    input_pipeline.check_batch(local, spec, local_batch, where=f"training batch {step}")
    state, metrics = train_step(state, input_pipeline.to_global(local, batch_sharding))
    pending.append(metrics)
    state = task.after_step(env, state, step + 1)
    done = step + 1
    last = done == total_steps
    if done % config.log_every == 0 or last:
      guard(done)
      mean = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[0]}
      pending = []
      writer.write(done, mean)
      writer.progress(done, mean)
    if config.eval_every and (done % config.eval_every == 0 or last):
      eval_metrics = evaluate(done)
      writer.progress(done, eval_metrics)
    if config.checkpoint_every and (done % config.checkpoint_every == 0 or last):
      guard(done)
      ckpt.save(done, state, iterator.get_state(), config)
    if not last and stop.requested(done):  # [ux] checkpoint this step, exit with code 75
      guard(done)
      ckpt.save(done, state, iterator.get_state(), config)
      ckpt.close()
      writer.close()
      stop.exit(done, ckpt.directory)
  stop.uninstall()  # [ux]

  # 5. Final evaluation (if the loop ran none at the end), curves, summary.
  if not eval_metrics:
    eval_metrics = evaluate(total_steps)
  ckpt.close()
  writer.close()
  plot = writer.plot()
  if jax.process_index() == 0:
    width = max(len(k) for k in eval_metrics) if eval_metrics else 10
    print(f"\nFinished {total_steps} steps in {time.time() - t_start:.1f}s "
          f"({len(jax.devices())} devices, mesh {dict(mesh.shape)}).")
    for k, v in sorted(eval_metrics.items()):
      print(f"  {k:<{width}}  {v:.4f}")
    print(f"  metrics:     {writer.jsonl_path}\n  tensorboard: {writer.tb_dir}\n"
          f"  checkpoints: {ckpt.directory}\n  plot:        {plot}", flush=True)
  return {**eval_metrics, "state": state}


# --- command line ---------------------------------------------------------------------------
def initialize_distributed(args) -> None:
  """`jax.distributed.initialize` from flags or JAX_* variables; a no-op on one host."""
  address = args.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = args.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0") or 0)
  pid = args.process_id if args.process_id is not None else os.environ.get("JAX_PROCESS_ID")
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  if address or args.distributed == "auto":
    if args.cpu_devices:  # simulated CPU devices talk through gloo
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if address:
      jax.distributed.initialize(coordinator_address=address, num_processes=num,
                                 process_id=int(pid))
    else:
      jax.distributed.initialize()


HELP_EPILOG = """\
config overrides:
  --config.KEY=VALUE    set any key of the config, nested keys with dots; VALUE is a Python
                        literal checked against the type of the config's value, e.g.
                        --config.total_steps=2000 --config.optimizer.learning_rate=0.01
                        --config.mesh.fsdp=2 --config.optimizer.transforms="('ogm_ge',)"
                        An unknown key or a value of the wrong type fails, naming the key.

resume and stop:
  Run the same command again to resume from the newest checkpoint in --workdir.
  Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a checkpoint and exits with
  code 75; a second Ctrl-C exits at once (code 130), keeping the newest finished checkpoint.
"""


def parse_args(argv: list[str]):
  parser = argparse.ArgumentParser(  # [ux] the epilog documents overrides, resume and stopping
      prog="python -m ml_pipelines.train", description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HELP_EPILOG)
  parser.add_argument("--config", required=True,
                      help="path/to/config.py[:arg]; the config's docstring says what arg means")
  parser.add_argument("--workdir", required=True,
                      help="where checkpoints, metrics.jsonl, tensorboard/ and curves.png go")
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="simulate N CPU devices (tests, laptops)")
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=0)
  parser.add_argument("--process_id", type=int, default=None)
  parser.add_argument("--distributed", choices=("none", "auto"), default="none",
                      help="auto: jax.distributed.initialize() detects a TPU pod or SLURM job")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}")
    overrides.append(item[len("--config."):])
  return args, overrides


def main(argv: list[str] | None = None) -> None:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  initialize_distributed(args)
  try:  # [ux] usage errors in one line; Ctrl-C outside the loop (which stops cleanly) quietly
    config = config_lib.override(config_lib.load(args.config), overrides)
    train_and_evaluate(config, args.workdir)
  except config_lib.UsageError as e:
    sys.exit(f"error: {e}")
  except KeyboardInterrupt:
    print("interrupted outside the training loop; the checkpoints in --workdir are kept; run "
          "the same command to resume.", file=sys.stderr)
    sys.exit(128 + signal.SIGINT)


if __name__ == "__main__":
  main()

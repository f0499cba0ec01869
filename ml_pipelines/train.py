"""The one trainer: any method, from a config, sharded over a mesh, resumable after preemption.

    python -m ml_pipelines.train --config=configs/classification/digits_cnn.py --workdir=/tmp/digits \
        [--config.total_steps=500 ...] [--cpu_devices=8]
    multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I, or set
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or --distributed=auto on TPU/SLURM.

The flow, top to bottom (see docs/extending.md for the extension points):
  1. config -> stages -> mesh -> task per stage -> datasets -> model split once
  2. variables {params, rest} created in their shardings; `init_from` loads pretrained ones at
     step 0
  3. per stage: params split into trainable `params` and `frozen`, the stage's optax chain over the
     trainable part, its jitted, donated train step; state {step, params, frozen, rest, opt_state,
     rng, extra, bad_step[, ema_params]}
  4. restore the newest readable checkpoint of the workdir, onto any mesh, in the structure of the
     stage it resumes in
  5. loop: stage switch at its known step -> batch -> train_step -> task.after_step -> log / eval /
     checkpoint
  6. final evaluation, curves PNG, summary
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import signal
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
from ml_pipelines import data
from ml_pipelines import tasks
from ml_pipelines.data import pipeline as input_pipeline
from ml_pipelines.trainer import checkpoint as checkpoint_lib
from ml_pipelines.trainer import config as config_lib
from ml_pipelines.trainer import init_from
from ml_pipelines.trainer import partition
from ml_pipelines.trainer import preemption
from ml_pipelines.trainer import sharding
from ml_pipelines.trainer import stages as stages_lib
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


def all_finite(tree) -> jax.Array:
  """True iff every entry of `tree` is finite, read off its global 2-norm: per-leaf sums of squares
  (the gradient-clipping transform computes the same ones), no copy of the leaves. On the PSLT fsdp
  train step (benchmarks/finite_check.py) it compiles as fast as one reduction over the concatenated
  leaves and without that float32 copy; a sum of `x * 0` per leaf compiled 3x slower. A norm past
  float32's range (entries above ~1e19) counts as non-finite too."""
  return jnp.isfinite(optax.tree.norm(tree))


class Env:
  """What a task's host-side hooks may use: config, mesh, workdir, datasets, constants and a
  whole-split `predict`."""

  def __init__(self, config, mesh, graphdef_eval, key_mask, workdir: str):
    self.config = config
    self.mesh = mesh
    self.workdir = workdir  # where the run writes: tasks put plots and exports here
    self.constants: dict[str, jax.Array] = {}  # Task.constants, on the devices once
    self._graphdef_eval = graphdef_eval
    self._key_mask = key_mask
    self.iterator = None  # the training batches; a stage-start hook may set its index list
    self._datasets: dict[str, data.Dataset] = {}
    self._predict_fns: dict[Any, Callable] = {}

  def dataset(self, split: str) -> data.Dataset:
    if split not in self._datasets:
      builder = data.get(self.config.data.name)
      self._datasets[split] = builder(self.config.data, split)
    return self._datasets[split]

  def set_index_list(self, stage: int, indices) -> None:
    """The examples an `index_list` stage samples from (current classes + exemplar memory); set
    in `Task.start_stage`, checkpointed with the data state."""
    self.iterator.set_index_list(stage, indices)

  @staticmethod
  def variables(state) -> tuple[dict, dict]:
    """(every parameter, trainable and frozen, in one dict; the rest) of a train state."""
    return partition.merge(state["params"], state["frozen"]), state["rest"]

  def predict(self, state, fn: Callable, split: str, indices=None) -> dict[str, np.ndarray]:
    """Runs jitted `fn(model_in_eval_mode, batch)` over every example of `split` once, in order."""
    if fn not in self._predict_fns:
      def apply(params, rest, batch, constants):
        model = nnx.merge(self._graphdef_eval, params, _load_keys(rest, self._key_mask))
        out = dict(fn(model, {**batch, **constants}))
        out["index"] = batch["index"]
        out["mask"] = batch["mask"]
        return out
      self._predict_fns[fn] = jax.jit(apply)
    apply = self._predict_fns[fn]
    dataset = self.dataset(split)
    bsh = sharding.batch_sharding(self.mesh)
    params, rest = self.variables(state)
    pieces = []
    for local in input_pipeline.eval_batches(dataset, self.config.eval_batch_size, indices):
      out = apply(params, rest, input_pipeline.to_global(local, bsh), self.constants)
      pieces.append(_to_host(out))
    merged = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    keep = merged.pop("mask").astype(bool)
    return {k: v[keep] for k, v in merged.items()}


def _to_host(tree):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
  return jax.tree_util.tree_map(np.asarray, tree)


def _subtree(tree: dict, path: tuple) -> Any:
  """`tree[path[0]][path[1]]...`; a key is tried as given, then as a string (pure dicts keep an
  `nnx.List`'s integer indices)."""
  for key in path:
    tree = tree[key] if key in tree else tree[str(key)]
  return tree


@dataclasses.dataclass
class StageProgram:
  """What one stage runs: its task, parameter partition, optax chain, state shardings and step."""
  stage: stages_lib.Stage
  task: Any
  mask: Any  # bool tree over every parameter: True = trainable in this stage
  tx: optax.GradientTransformation
  shardings: dict
  train_step: Callable  # jitted (state, global batch, constants) -> (state, metrics)


def distinct_buffers(state):
  """`state` with every array that appears in more than one leaf replaced by copies after its
  first appearance: the donated train step cannot take one buffer twice, and a task's hooks may
  put one array in two leaves (one zeros array for several counters, a teacher snapshot that is
  the parameters themselves)."""
  seen = set()

  def once(x):
    if isinstance(x, jax.Array):
      if id(x) in seen:
        return jnp.copy(x)
      seen.add(id(x))
    return x
  return jax.tree_util.tree_map(once, state)


class Run:
  """A run's fixed parts (mesh, stages, data, model split, variable shardings) and, per stage, its
  `StageProgram`. `train_and_evaluate` drives it; tests and benchmarks lower its train steps."""

  def __init__(self, config, workdir: str):
    config_lib.check_keys(config)
    self.config = config
    self.stages = stages_lib.build(config)
    self.total_steps = self.stages[-1].end
    self.mesh = sharding.build_mesh(config.mesh)
    sharding.check_batch_sizes(self.mesh, batch_size=config.batch_size,
                               eval_batch_size=config.eval_batch_size)
    self.tasks = [tasks.get(s.config.task.name)(s.config) for s in self.stages]
    for task, stage in zip(self.tasks, self.stages):
      task.stage = stage
    self.train_ds = data.get(config.data.name)(config.data, config.data.train_split)
    self.ema_decay = float(config.get("ema_decay", 0.0))

    # The model, split once (the mode lives in the graphdef, not in a flag).
    self.make_model = functools.partial(models.build, config.model, seed=config.seed)
    self.abstract_model = nnx.eval_shape(self.make_model)
    self.abstract_model.eval()
    graphdef_eval = nnx.graphdef(self.abstract_model)
    self.abstract_model.train()
    _, _, abstract_rest = nnx.split(self.abstract_model, nnx.Param, ...)
    self.key_mask = jax.tree_util.tree_map(_is_key, nnx.to_pure_dict(abstract_rest))
    self.env = Env(config, self.mesh, graphdef_eval, self.key_mask, workdir)
    self.env._datasets[config.data.train_split] = self.train_ds

    rules = tuple(tuple(r) for r in config.sharding_rules)
    self.repl = sharding.replicated(self.mesh)
    self.batch_sharding = sharding.batch_sharding(self.mesh)
    self.variable_shapes = jax.eval_shape(self._init_variables)
    self.variable_shardings = {k: sharding.tree_shardings(v, rules, self.mesh)
                               for k, v in self.variable_shapes.items()}
    self._programs: dict[int, StageProgram] = {}
    self._extra_shapes = None

  def _init_variables(self) -> dict[str, dict]:
    model = self.make_model()
    return {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
            "rest": _store_keys(nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))}

  def init_variables(self) -> dict[str, dict]:
    """The model's initial {params, rest}, created directly in their shardings."""
    return jax.jit(self._init_variables, out_shardings=self.variable_shardings)()

  # --- one stage -------------------------------------------------------------------------------
  def program(self, index: int) -> StageProgram:
    if index not in self._programs:
      self._programs[index] = self._build_program(self.stages[index], self.tasks[index])
    return self._programs[index]

  def _train_graphdef(self, mask, freeze_batch_stats: bool):
    """The train-mode graphdef; with `freeze_batch_stats`, BatchNorm layers whose parameters are
    all frozen run on (and keep) their running statistics."""
    model = self.abstract_model
    model.train()
    if freeze_batch_stats:
      for path, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm) and not any(
            jax.tree_util.tree_leaves(_subtree(mask, tuple(path)))):
          module.use_running_average = True
    graphdef = nnx.graphdef(model)
    model.train()
    return graphdef

  def _build_program(self, stage: stages_lib.Stage, task) -> StageProgram:
    c = stage.config.optimizer
    mask = partition.trainable_mask(self.variable_shapes["params"], c.get("trainable"),
                                    c.get("freeze"))
    if not any(jax.tree_util.tree_leaves(mask)):
      raise ValueError(f"Stage {stage.name!r}: optimizer.trainable={c.get('trainable')!r} / "
                       f"freeze={c.get('freeze')!r} leave no parameter to train.")
    graphdef_train = self._train_graphdef(mask, bool(c.get("freeze_batch_stats", False)))
    tx = optim.build(c, stage.steps, stage.count_offset)
    learning_rate = lr_schedule(c, stage.steps)
    key_mask, ema_decay = self.key_mask, self.ema_decay

    def train_step(state, batch, constants):
      step = state["step"]
      rng = jax.random.fold_in(state["rng"], step)
      rest = _load_keys(state["rest"], key_mask)
      batch = {**batch, **constants}

      def loss_fn(params, rest):
        model = nnx.merge(graphdef_train, partition.merge(params, state["frozen"]), rest)
        loss, aux = task.loss(model, batch, rng, state["extra"], step)
        return loss, (aux, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param))))

      # One forward pass; the total loss and each named term in aux["grad_terms"] get their own
      # backward pass through the same VJP (MMPareto-style methods need per-term gradients).
      # Only the trainable parameters are differentiated.
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
        new["ema_params"] = optax.incremental_update(new["params"], state["ema_params"],
                                                     1.0 - ema_decay)
      finite = jnp.isfinite(loss) & all_finite(grads) & all_finite(new["params"])
      old = {k: state[k] for k in new}
      new = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
      new.update(step=step + 1, rng=state["rng"], frozen=state["frozen"],
                 bad_step=jnp.where((state["bad_step"] < 0) & ~finite, step, state["bad_step"]))
      metrics = {"train/loss": loss, "train/learning_rate": learning_rate(step - stage.start),
                 **{f"train/{k}": v for k, v in aux.get("metrics", {}).items()}}
      return new, metrics

    shardings = self._state_shardings(mask, tx)
    const_sh = jax.tree_util.tree_map(lambda _: self.repl, self.env.constants)
    step_fn = jax.jit(train_step, in_shardings=(shardings, self.batch_sharding, const_sh),
                      out_shardings=(shardings, self.repl), donate_argnums=0)
    return StageProgram(stage, task, mask, tx, shardings, step_fn)

  def _state_shardings(self, mask, tx) -> dict:
    params_sh, frozen_sh = partition.split(self.variable_shardings["params"], mask)
    params_shapes, _ = partition.split(self.variable_shapes["params"], mask)
    opt_shapes = jax.eval_shape(tx.init, params_shapes)
    out = {"step": self.repl, "params": params_sh, "frozen": frozen_sh,
           "rest": self.variable_shardings["rest"],
           "opt_state": sharding.optimizer_state_shardings(tx, opt_shapes, params_sh, self.mesh),
           "rng": self.repl, "bad_step": self.repl,
           "extra": jax.tree_util.tree_map(lambda _: self.repl, self._extra_shapes)}
    if self.ema_decay:
      out["ema_params"] = params_sh
    return out

  # --- state ------------------------------------------------------------------------------------
  def initial_state(self, variables: dict) -> dict:
    """The state of stage 0 at step 0 from the model's variables; the task's extra is made here."""
    prog0 = self.tasks[0]
    params_all = variables["params"]
    extra = prog0.init_extra(self.env, jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 1),
                             params_all)
    extra = jax.device_put(distinct_buffers(extra), self.repl)
    self._extra_shapes = jax.eval_shape(lambda: extra)
    prog = self.program(0)
    params, frozen = partition.split(params_all, prog.mask)
    state = {"step": jnp.zeros([], jnp.int32), "params": params, "frozen": frozen,
             "rest": variables["rest"], "opt_state": prog.tx.init(params),
             "rng": jax.random.PRNGKey(self.config.seed), "bad_step": jnp.full([], -1, jnp.int32),
             "extra": extra}
    if self.ema_decay:
      state["ema_params"] = jax.tree_util.tree_map(jnp.copy, params)
    return jax.device_put(state, prog.shardings)

  def abstract_state(self, step: int) -> dict:
    """Shapes, dtypes and shardings of the state a checkpoint at `step` holds (its stage's)."""
    prog = self.program(stages_lib.index_at(self.stages, step))
    params, frozen = partition.split(self.variable_shapes["params"], prog.mask)
    shapes = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params, "frozen": frozen,
              "rest": self.variable_shapes["rest"],
              "opt_state": jax.eval_shape(prog.tx.init, params),
              "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0)),
              "bad_step": jax.ShapeDtypeStruct((), jnp.int32), "extra": self._extra_shapes}
    if self.ema_decay:
      shapes["ema_params"] = params
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, prog.shardings)

  def enter_stage(self, state: dict, index: int) -> dict:
    """The state re-partitioned for stage `index` (a fresh optimizer state unless it keeps the
    previous one), resharded, after the task's `start_stage` hook."""
    prog = self.program(index)
    params_all, _ = self.env.variables(state)
    params, frozen = partition.split(params_all, prog.mask)
    if prog.stage.reset_optimizer:
      opt_state = prog.tx.init(params)
    else:
      if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(state["params"]):
        raise ValueError(f"Stage {prog.stage.name!r} keeps the optimizer state "
                         f"(reset_optimizer=False) but trains other parameters than the stage "
                         f"before it; set reset_optimizer=True.")
      opt_state = state["opt_state"]
    new = {**state, "params": params, "frozen": frozen, "opt_state": opt_state}
    if self.ema_decay:  # newly trainable leaves start their average at their current value
      new["ema_params"] = partition.split(partition.merge(state["ema_params"], state["frozen"]),
                                          prog.mask)[0]
    new = jax.device_put(new, prog.shardings)
    return distinct_buffers(prog.task.start_stage(self.env, new, prog.stage))

  def lower_train_step(self, index: int = 0):
    """The stage's train step lowered on abstract inputs (for `.compile().memory_analysis()`)."""
    if self._extra_shapes is None:
      self.initial_state(jax.tree_util.tree_map(
          lambda x, s: jnp.zeros(x.shape, x.dtype, device=s), self.variable_shapes,
          self.variable_shardings))
    prog = self.program(index)
    spec = input_pipeline.batch_spec(self.train_ds)
    batch = {k: jax.ShapeDtypeStruct((self.config.batch_size, *shape), dtype,
                                     sharding=self.batch_sharding)
             for k, (shape, dtype) in spec.items()}
    return prog.train_step.lower(self.abstract_state(self.stages[index].start), batch,
                                 self.env.constants)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns final eval metrics
  and the final `state`."""
  # 1. Mesh, stages, tasks, data, model.
  config_lib.prepare_workdir(workdir)  # a file or an unwritable path: one line
  run = Run(config, workdir)
  env, stages, total_steps = run.env, run.stages, run.total_steps
  constants = run.tasks[0].constants(env)
  if constants:  # task-wide arrays (a whole graph): on the devices once, never checkpointed
    env.constants = jax.device_put(constants, run.repl)

  # 2. The initial state of stage 0 (pretrained weights once, at step 0).
  variables = run.init_variables()
  state = run.initial_state(variables)

  # 3. Resume from the newest readable checkpoint, onto this mesh, in its stage's structure.
  ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints,
                                     keep_period=config.get("keep_period", 0))
  restored = ckpt.restore_latest(run.abstract_state, config)
  start_step = 0
  if restored is not None:
    state, start_step = restored.state, restored.step
    print(f"Resumed from step {start_step} of {ckpt.directory}", flush=True)
  elif config.get("init_from") and config.init_from.get("path"):
    # Pretrained weights, once at step 0; the task's extra and the optimizer state are made anew
    # from them (a resumed run restores its own checkpoint instead).
    state = run.initial_state(init_from.apply(config.init_from, variables, run.variable_shardings))
  prog = run.program(stages_lib.index_at(stages, start_step))

  iterator = input_pipeline.train_iterator(run.train_ds, config.batch_size, config.seed, start_step,
                                           stages=stages_lib.sampler_table(stages))
  if restored is not None:  # the next step and the index lists the tasks set
    if restored.data_state.get("next_index", start_step) != start_step:
      raise RuntimeError(f"Checkpoint data state {restored.data_state} does not match step "
                         f"{start_step}.")
    iterator.set_state(restored.data_state)
  env.iterator = iterator
  if restored is None:
    state = distinct_buffers(prog.task.start_stage(env, state, prog.stage))
  spec = input_pipeline.batch_spec(run.train_ds)
  local_batch = config.batch_size // jax.process_count()
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
    metrics = {f"eval/{k}": v for k, v in prog.task.evaluate(env, state).items()}
    if run.ema_decay:  # the same evaluation with the EMA parameters (batch statistics as trained)
      ema_state = {**state, "params": state["ema_params"]}
      metrics.update({f"eval/ema_{k}": v for k, v in prog.task.evaluate(env, ema_state).items()})
    writer.write(step, metrics)
    return metrics

  # 4. The loop; a stage ends after its last step (the next one's state is what gets saved).
  pending: list[dict] = []
  eval_metrics: dict[str, float] = {}
  t_start = time.time()
  stop = preemption.StopOnSignal(sync_every=config.log_every).install()  # SIGINT / SIGTERM
  try:
    for step in range(start_step, total_steps):
      local = next(iterator)
      input_pipeline.check_batch(local, spec, local_batch, where=f"training batch {step}")
      state, metrics = prog.train_step(state, input_pipeline.to_global(local, run.batch_sharding),
                                       env.constants)
      pending.append(metrics)
      hooked = prog.task.after_step(env, state, step + 1)
      state = state if hooked is state else distinct_buffers(hooked)
      done = step + 1
      last = done == total_steps
      stage_end = done == prog.stage.end
      if done % config.log_every == 0 or last or stage_end:
        guard(done)
        mean = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[0]}
        pending = []
        writer.write(done, mean)
        writer.progress(done, mean)
      if config.eval_every and (done % config.eval_every == 0 or last or stage_end):
        eval_metrics = evaluate(done)
        writer.progress(done, eval_metrics)
      if stage_end and not last:
        prog = run.program(prog.stage.index + 1)
        print(f"Stage {prog.stage.name!r} ({prog.stage.index + 1}/{len(stages)}) starts at step "
              f"{done}.", flush=True)
        state = run.enter_stage(state, prog.stage.index)
      if config.checkpoint_every and (done % config.checkpoint_every == 0 or last):
        guard(done)
        ckpt.save(done, state, iterator.get_state(), config)
      if not last and stop.requested(done):  # checkpoint this step, exit with code 75
        guard(done)
        ckpt.save(done, state, iterator.get_state(), config)
        ckpt.close()
        writer.close()
        stop.exit(done, ckpt.directory)
  except Exception:
    ckpt.wait()  # a save in flight finishes, so the workdir holds only whole checkpoints
    raise
  finally:
    stop.uninstall()

  # 5. Final evaluation (if the loop ran none at the end), curves, summary.
  if not eval_metrics:
    eval_metrics = evaluate(total_steps)
  ckpt.close()
  writer.close()
  plot = writer.plot()
  if jax.process_index() == 0:
    width = max(len(k) for k in eval_metrics) if eval_metrics else 10
    print(f"\nFinished {total_steps} steps in {time.time() - t_start:.1f}s "
          f"({len(jax.devices())} devices, mesh {dict(run.mesh.shape)}).")
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
  parser = argparse.ArgumentParser(  # the epilog documents overrides, resume and stopping
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
  try:  # usage errors in one line; Ctrl-C outside the loop (which stops cleanly) quietly
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

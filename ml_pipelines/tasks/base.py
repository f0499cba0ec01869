"""The `Task` contract: how a method turns a model and a batch into a loss, metrics and extras.

The trainer owns the loop, the state and the shardings; a task owns what is computed. Everything a
task method returns from `loss` and `eval_metrics` runs inside `jax.jit`; `init_extra`, `constants`,
`evaluate` and `after_step` run on the host and may call jitted code through `env`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from ml_pipelines.registry import unknown_options


class Task:
  """Base class. Subclasses override `loss` and usually `eval_metrics`, and list the options they
  read from `config.task` in `OPTIONS`; any other key fails with the closest valid names."""
  OPTIONS: frozenset[str] = frozenset()
  stage = None  # the `trainer.stages.Stage` this task object runs (set by the trainer)

  def __init__(self, config):
    self.config = config  # the whole run config; task options live in config.task
    unknown_options([k for k in config.task.keys() if k != "name"], self.OPTIONS,
                    f"{config.task.name!r} task")

  def init_extra(self, env, rng: jax.Array, params: Any) -> Any:
    """Method state that lives outside the network (codes, anchors, projectors), or None.

    It is checkpointed with the model, replicated over the mesh, and passed to `loss`.
    """
    return None

  def constants(self, env) -> dict[str, Any] | None:
    """Arrays every batch needs whole (a graph's features and edge lists), or None.

    The trainer puts them on the devices once (replicated, never checkpointed) and passes them to
    the jitted train step and `env.predict` as an argument, merged into each batch as
    `batch[name]` (so `loss` and `eval_metrics` read e.g. `batch["graph"]`).
    """
    return None

  def loss(self, model: nnx.Module, batch: dict[str, jax.Array], rng: jax.Array, extra: Any,
           step: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """Training forward pass (model in train mode). Returns `(loss, aux)` with optional keys:

    - `metrics`: dict of scalars, logged as `train/<name>`;
    - `tx_args`: dict passed by keyword to `tx.update` (per-modality scores, features, ...);
    - `extra`: the updated task state (same structure as `init_extra`'s).
    """
    raise NotImplementedError(f"{type(self).__name__} must define loss().")

  def eval_metrics(self, model: nnx.Module, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-example values `[B]` (model in eval mode); the default `evaluate` averages them."""
    return {}

  def evaluate(self, env, state) -> dict[str, float]:
    """Whole-split evaluation. The default averages `eval_metrics` over every example once."""
    outputs = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    return {k: float(np.mean(v)) for k, v in outputs.items() if k != "index"}

  def start_stage(self, env, state, stage):
    """Host-side hook when a stage of `config.stages` begins (herding, a teacher snapshot); also
    at step 0 of a fresh run. `extra` must keep its structure. Returns the state."""
    return state

  def after_step(self, env, state, step: int):
    """Host-side hook after each train step (outer loops, discrete updates). Returns the state."""
    return state

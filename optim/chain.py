"""The optax chain a config's `optimizer` block describes.

    clip_grad_norm -> method transforms (config order) -> base optimizer with schedule
    -> zero updates of params matching `freeze`

Weight decay acts on params whose path matches `weight_decay_mask` (all if unset): as L2 added to
the gradient before the base optimizer for sgd/adam (PyTorch's `weight_decay`), decoupled after it
for adamw.

`ema_decay` (> 0) makes the trainer keep an exponential moving average of the parameters and
evaluate it beside the trained ones (`eval/ema_*`); it is not part of the chain.

Method transforms see raw gradients (modulation, masks and SAM act on gradients, as in the papers)
and receive the trainer's extra args (`grad_fn`, `step`, `rng`, the task's `tx_args`).
"""
from __future__ import annotations

import difflib

import jax
import jax.numpy as jnp
import optax

import optim
from optim import paths

BASE = ("sgd", "adam", "adamw")
OPTION_KEYS = frozenset({"name", "learning_rate", "schedule", "warmup_steps", "decay_boundaries",
                         "decay_factor", "end_factor", "momentum", "nesterov", "b1", "b2", "eps",
                         "weight_decay", "weight_decay_mask", "freeze", "clip_grad_norm",
                         "param_groups", "transforms", "ema_decay"})


def schedule(c, total_steps: int) -> optax.Schedule:
  """constant | cosine | step, with linear warm-up of `warmup_steps`."""
  lr, warmup = float(c.learning_rate), int(c.get("warmup_steps", 0))
  kind = c.get("schedule", "constant")
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1),
                                       alpha=float(c.get("end_factor", 0.0)))
  elif kind == "step":
    boundaries = {round(b * total_steps) - warmup: float(c.get("decay_factor", 0.1))
                  for b in c.get("decay_boundaries", (0.5, 0.75))}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    raise ValueError(f"Unknown schedule {kind!r}; use constant, cosine or step.")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def _base(c, lr) -> optax.GradientTransformation:
  name = c.name
  if name == "sgd":
    return optax.sgd(lr, momentum=c.get("momentum", 0.9) or None, nesterov=c.get("nesterov", False))
  if name in ("adam", "adamw"):
    return optax.adam(lr, b1=c.get("b1", 0.9), b2=c.get("b2", 0.999), eps=c.get("eps", 1e-8))
  raise ValueError(f"Unknown optimizer {name!r}; use one of {BASE}.")


def _method_options(c, name: str) -> dict:
  return dict(c[name]) if name in c else {}


def build_chain(c, total_steps: int) -> optax.GradientTransformationExtraArgs:
  transforms = tuple(c.get("transforms", ()))
  unknown = set(c.keys()) - OPTION_KEYS - set(transforms)
  if unknown:
    msgs = []
    for k in sorted(unknown):
      close = difflib.get_close_matches(k, sorted(OPTION_KEYS | set(transforms)), n=3)
      msgs.append(f"Unknown optimizer key {k!r}." + (f" Did you mean {close}?" if close else ""))
    raise KeyError(" ".join(msgs))
  lr = schedule(c, total_steps)
  groups = dict(c.get("param_groups", {}))
  parts = []
  if c.get("clip_grad_norm"):
    parts.append(optax.clip_by_global_norm(float(c.clip_grad_norm)))
  for name in transforms:
    parts.append(optim.get(name)(param_groups=groups, **_method_options(c, name)))
  wd = float(c.get("weight_decay", 0.0))
  mask_rx = c.get("weight_decay_mask", None)

  def decay_mask(params):
    return (paths.match(params, mask_rx) if mask_rx
            else jax.tree_util.tree_map(lambda _: True, params))
  if wd and c.name != "adamw":
    # PyTorch SGD/Adam `weight_decay`: L2 added to the gradient before momentum / moments.
    parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
  parts.append(_base(c, lr))
  if wd and c.name == "adamw":
    parts.append(_decoupled_decay(wd, lr, decay_mask))
  freeze_rx = c.get("freeze", None)
  if freeze_rx:
    parts.append(optax.masked(optax.set_to_zero(), lambda p: paths.match(p, freeze_rx)))
  return optax.chain(*parts)


def _decoupled_decay(wd: float, lr: optax.Schedule, mask) -> optax.GradientTransformation:
  """AdamW's decoupled decay, `update -= lr(t) * wd * w` (Loshchilov & Hutter 2019, Alg. 2 l. 12)."""

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    step_lr = lr(state.count)
    updates = jax.tree_util.tree_map(
        lambda u, p, m: u - (step_lr * wd * p).astype(u.dtype) if m else u,
        updates, params, mask(params))
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))
  return optax.GradientTransformation(init_fn, update_fn)

"""The optax chain a config's `optimizer` block describes.

    clip_grad_norm -> method transforms (config order) -> base optimizer with schedule
        -> post transforms (config order)

The chain sees the trainable parameters only: `trainable` / `freeze` (path regexes) partition the
parameters before the optimizer is built (`ml_pipelines.trainer.partition`), so frozen weights get
no gradient and no optimizer state. `freeze_batch_stats` makes BatchNorm layers whose parameters are
all frozen run on their running statistics during training (as a frozen feature extractor should).

Weight decay acts on params whose path matches `weight_decay_mask` (all if unset): as L2 added to
the gradient before the base optimizer for sgd/adam (PyTorch's `weight_decay`), decoupled for adamw
(`optax.adamw`'s masked decay, Loshchilov & Hutter 2019, Alg. 2 l. 12).

Separate optimizers per parameter group (`group_optimizers`, optax `multi_transform`): `{group:
{overrides of this block}}` with the groups' regexes in `param_groups`; each group gets the chain
built from this block with its overrides (its own rate, schedule, warm-up, momentum, decay and
transforms), every other parameter the block's own chain. PVP trains its prompts and its adapters
with different rates and warm-ups this way. `clip_grad_norm` stays one clip over all parameters
before the groups split (PyTorch's `clip_grad_norm_(model.parameters())`), not one per group.

Method transforms see raw gradients (modulation, masks and SAM act on gradients, as in the papers)
and receive the trainer's extra args (`grad_fn`, `step`, `rng`, the task's `tx_args`).
`post_transforms` (registered the same way) see the base optimizer's update and the parameters, so
they can turn `p + update` into a projection of it (DPCML's norm constraints).
"""
from __future__ import annotations

import copy
import warnings

import jax
import jax.numpy as jnp
import optax

import optim
from ml_pipelines.registry import unknown_options
from optim import paths

BASE = ("sgd", "adam", "adamw")
OPTION_KEYS = frozenset({"name", "learning_rate", "schedule", "warmup_steps", "decay_boundaries",
                         "decay_factor", "end_factor", "momentum", "nesterov", "b1", "b2", "eps",
                         "weight_decay", "weight_decay_mask", "trainable", "freeze",
                         "freeze_batch_stats", "clip_grad_norm", "param_groups", "transforms",
                         "warmup_fraction", "post_transforms", "warmup_lr",
                         "group_optimizers", "num_cycles", "power"})


class WarmupWarning(UserWarning):
  """A run that ends before its warm-up does: it never trains at the configured rate."""


def warmup_steps(c, total_steps: int) -> int:
  """Linear warm-up length: `warmup_fraction` of the run (scales with `total_steps`), or a fixed
  `warmup_steps`; warns when the run ends inside the warm-up (the peak rate is never reached)."""
  fraction, fixed = float(c.get("warmup_fraction", 0.0)), int(c.get("warmup_steps", 0))
  if fraction and fixed:
    raise ValueError(f"optimizer.warmup_steps={fixed} and optimizer.warmup_fraction={fraction} "
                     f"are both set; set one of them.")
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"optimizer.warmup_fraction={fraction} must be in [0, 1).")
  warmup = round(fraction * total_steps) if fraction else fixed
  if warmup >= total_steps > 0:
    warnings.warn(f"the run ends inside its warm-up (optimizer.warmup_steps={warmup} >= "
                  f"total_steps={total_steps}): the learning rate never reaches "
                  f"{float(c.learning_rate):g}. Set optimizer.warmup_fraction (a fraction of the "
                  f"run) or a smaller optimizer.warmup_steps.", WarmupWarning, stacklevel=2)
  return warmup


def schedule(c, total_steps: int) -> optax.Schedule:
  """constant | cosine | cosine_cycles | step, after a linear warm-up from 0 (`warmup_steps`), or
  a constant one at `warmup_lr` when that is set (Dassl's "constant" warm-up).
  `cosine_cycles`: lr * max(0, cos(pi * num_cycles * t / T)) with `num_cycles` (7/16), the schedule
  of FixMatch and its successors (Sohn et al. 2020, Sec. 4; kekmodel/FixMatch-pytorch
  `get_cosine_schedule_with_warmup`)."""
  lr, warmup = float(c.learning_rate), warmup_steps(c, total_steps)
  kind = c.get("schedule", "constant")
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1),
                                       alpha=float(c.get("end_factor", 0.0)))
  elif kind == "cosine_cycles":
    cycles, span = float(c.get("num_cycles", 7 / 16)), max(total_steps - warmup, 1)
    main = lambda t: lr * jnp.maximum(0.0, jnp.cos(jnp.pi * cycles * t / span))  # noqa: E731
  elif kind == "poly":  # mmseg `PolyLR`: (lr - eta_min) (1 - t / T)^power + eta_min
    main = optax.polynomial_schedule(lr, lr * float(c.get("end_factor", 0.0)),
                                     float(c.get("power", 0.9)), max(total_steps - warmup, 1))
  elif kind == "step":
    boundaries = {round(b * total_steps) - warmup: float(c.get("decay_factor", 0.1))
                  for b in c.get("decay_boundaries", (0.5, 0.75))}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    raise ValueError(f"Unknown schedule {kind!r}; use constant, cosine, cosine_cycles, poly or "
                     "step.")
  if warmup:
    ramp = (optax.constant_schedule(float(c.warmup_lr)) if c.get("warmup_lr") is not None
            else optax.linear_schedule(0.0, lr, warmup))
    return optax.join_schedules([ramp, main], [warmup])
  return main


def _base(c, lr, wd: float, decay_mask) -> optax.GradientTransformation:
  name = c.name
  if name == "sgd":
    return optax.sgd(lr, momentum=c.get("momentum", 0.9) or None, nesterov=c.get("nesterov", False))
  betas = dict(b1=c.get("b1", 0.9), b2=c.get("b2", 0.999), eps=c.get("eps", 1e-8))
  if name == "adam":
    return optax.adam(lr, **betas)
  if name == "adamw":
    return optax.adamw(lr, weight_decay=wd, mask=decay_mask, **betas)
  raise ValueError(f"Unknown optimizer {name!r}; use one of {BASE}.")


def _method_options(c, name: str) -> dict:
  return dict(c[name]) if name in c else {}


def _group_chains(c, total_steps: int, count_offset: int) -> optax.GradientTransformationExtraArgs:
  """`optax.multi_transform` over `group_optimizers`: one chain per group, the block's own chain
  for the parameters in no listed group."""
  per_group = {k: dict(v) for k, v in dict(c.group_optimizers).items()}
  groups = dict(c.get("param_groups", {}))
  unknown = sorted(set(per_group) - set(groups))
  if unknown:
    raise ValueError(f"optimizer.group_optimizers names {unknown}, which optimizer.param_groups "
                     f"does not define (it has {sorted(groups)}).")
  clipped = sorted(name for name, overrides in per_group.items() if "clip_grad_norm" in overrides)
  if clipped:
    raise ValueError(f"optimizer.group_optimizers {clipped} set clip_grad_norm; the clip acts on "
                     f"the global norm of all parameters, so set it once in the optimizer block.")
  base = copy.deepcopy(c)
  clip = float(c.get("clip_grad_norm") or 0.0)
  with base.ignore_type():
    del base["group_optimizers"]
    base["clip_grad_norm"] = 0.0
  chains = {"__rest__": build_chain(base, total_steps, count_offset)}
  for name, overrides in per_group.items():
    group = copy.deepcopy(base)
    with group.ignore_type():
      for key, value in overrides.items():
        group[key] = value
    chains[name] = build_chain(group, total_steps, count_offset)
  selected = {name: groups[name] for name in per_group}
  grouped = optax.multi_transform(chains,
                                  lambda params: paths.labels(params, selected, "__rest__"))
  return optax.chain(optax.clip_by_global_norm(clip), grouped) if clip else grouped


def build_chain(c, total_steps: int, count_offset: int = 0
                ) -> optax.GradientTransformationExtraArgs:
  """The chain for `total_steps` updates; `count_offset` updates were already counted by the state
  it continues (a stage that keeps the previous stage's optimizer state), so its schedule starts
  at its own step 0."""
  transforms = tuple(c.get("transforms", ()))
  post_transforms = tuple(c.get("post_transforms", ()))
  unknown_options(c.keys(), OPTION_KEYS | set(transforms) | set(post_transforms), "optimizer")
  if c.get("group_optimizers"):
    return _group_chains(c, total_steps, count_offset)
  lr = schedule(c, total_steps)
  if count_offset:
    lr = lambda count, f=lr: f(count - count_offset)  # noqa: E731
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
  parts.append(_base(c, lr, wd, decay_mask))
  for name in post_transforms:
    parts.append(optim.get(name)(param_groups=groups, **_method_options(c, name)))
  return optax.chain(*parts)

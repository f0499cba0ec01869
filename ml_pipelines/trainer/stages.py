"""Multi-stage runs: a static table of stages inside one run, so the stage is a pure function of the step.

    c.stages = (
        dict(name="warmup_head", steps=200, trainable=r"^head/",
             optimizer=dict(learning_rate=1e-2)),
        dict(name="finetune", steps=800, optimizer=dict(learning_rate=1e-4), reset_optimizer=True,
             task=dict(label_smoothing=0.1), data=dict(sampler=dict(name="class_balanced"))),
    )

A stage may set, on top of the run's config:
- `steps` (required): its length; the run's `total_steps` must equal the sum;
- `trainable` / `freeze`: the parameter partition while it runs (default: the optimizer block's);
- `optimizer`: overrides of the optimizer block (learning rate, schedule, ...); its learning-rate
  schedule spans the stage's own steps;
- `reset_optimizer` (default True): start a fresh optimizer state (moments, schedule count); False
  carries the previous stage's state on, which needs the same trainable set and transforms;
- `task`: overrides of the task options (the task object of the stage is built from them);
- `data`: `{sampler: {...}}`, the stage's sampler (see `ml_pipelines.data.samplers`).
The trainer calls `task.start_stage(env, state, stage)` on the host when a stage begins (herding, a
teacher snapshot). Without `config.stages` a run is one stage named "train".
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import ml_collections

from ml_pipelines.registry import unknown_options

STAGE_KEYS = frozenset({"name", "steps", "trainable", "freeze", "optimizer", "reset_optimizer",
                        "task", "data"})


@dataclasses.dataclass(frozen=True)
class Stage:
  index: int
  name: str
  start: int  # first global step of the stage
  end: int  # one past its last step
  config: ml_collections.ConfigDict  # the run's config with this stage's overrides applied
  reset_optimizer: bool
  count_offset: int  # optimizer updates already counted when the stage starts (0 after a reset)

  @property
  def steps(self) -> int:
    return self.end - self.start


def _merged(base: ml_collections.ConfigDict, overrides: dict | None) -> ml_collections.ConfigDict:
  """`base` with `overrides` set (the task and optimizer builders check the keys)."""
  out = copy.deepcopy(base)
  for key, value in (overrides or {}).items():
    with out.ignore_type():
      out[key] = value.to_dict() if hasattr(value, "to_dict") else value
  return out


def build(config: ml_collections.ConfigDict) -> list[Stage]:
  """The run's stages, checked: known keys, positive steps, total_steps equal to their sum."""
  table = [dict(s.to_dict() if hasattr(s, "to_dict") else s) for s in config.get("stages", ())]
  total = int(config.total_steps)
  if not table:
    return [Stage(0, "train", 0, total, config, True, 0)]
  stages, start, last_reset = [], 0, 0
  for i, row in enumerate(table):
    name = str(row.get("name", f"stage{i}"))
    unknown_options([k for k in row], STAGE_KEYS, f"stage {name!r}")
    steps = row.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
      raise ValueError(f"Stage {name!r} needs a positive integer `steps`, got {steps!r}.")
    reset = bool(row.get("reset_optimizer", True))
    if i == 0 or reset:
      last_reset = start
    c = copy.deepcopy(config)
    with c.ignore_type():
      c.optimizer = _merged(config.optimizer, row.get("optimizer"))
      for key in ("trainable", "freeze"):
        if key in row:
          c.optimizer[key] = row[key]
      c.task = _merged(config.task, row.get("task"))
      if row.get("data"):
        c.data = _merged(config.data, row["data"])
    stages.append(Stage(i, name, start, start + steps, c, reset or i == 0, start - last_reset))
    start += steps
  if start != total:
    raise ValueError(f"total_steps={total} but the stages add up to {start} steps "
                     f"({', '.join(f'{s.name}: {s.steps}' for s in stages)}); make them agree.")
  return stages


def index_at(stages: list[Stage], step: int) -> int:
  """The stage that runs global step `step` (the last stage for step >= total_steps)."""
  for s in stages:
    if step < s.end:
      return s.index
  return stages[-1].index


def sampler_table(stages: list[Stage]) -> list[tuple[int, dict[str, Any]]]:
  """[(start step, sampler config)] for the input pipeline."""
  out = []
  for s in stages:
    sampler = s.config.data.get("sampler", None)
    sampler = sampler.to_dict() if hasattr(sampler, "to_dict") else dict(sampler or {})
    out.append((s.start, sampler or {"name": "epochs"}))
  return out

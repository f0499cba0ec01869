"""What the class-incremental configs share: the run keys, the stage table (one stage per task,
two for ACL), and the embedded digits protocol (5 tasks of 2 classes, class order seed 1993 as
GiantJun/CL_Pytorch, a staged CNN)."""
from __future__ import annotations

import ml_collections

DIGITS_BACKBONE = {"name": "staged_cnn", "in_channels": 1, "width": 16, "num_stages": 3}


def run_config(*, batch_size: int, eval_batch_size: int, log_every: int = 50
               ) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 0  # set by with_stages
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.log_every = log_every
  c.eval_every = 0
  c.checkpoint_every = 0
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  return c


def task_stages(num_tasks: int, steps: int, *, phases=None) -> tuple[dict, ...]:
  """One `index_list` stage per task, or per task the rows of `phases(t)`: a list of
  ``(name, steps, stage overrides)`` (each row gets `task_index` t and the index-list sampler)."""
  rows = []
  for t in range(num_tasks):
    for name, n, extra in (phases(t) if phases else [("train", steps, {})]):
      extra = dict(extra)
      task = {"task_index": t, **extra.pop("task", {})}
      rows.append(dict(name=f"task{t}_{name}", steps=n, task=task,
                       data=dict(sampler=dict(name="index_list")), **extra))
  return tuple(rows)


def with_stages(c: ml_collections.ConfigDict, stages) -> ml_collections.ConfigDict:
  c.stages = stages
  c.total_steps = sum(s["steps"] for s in stages)
  c.eval_every = c.total_steps  # the accuracy-matrix rows are taken at the task boundaries
  c.checkpoint_every = min(s["steps"] for s in stages)
  return c


def digits_task(name: str, **options) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name=name, num_classes=10, class_order=1993,
                                        base_classes=0, increment=2, **options))

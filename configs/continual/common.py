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


# ImageNet-100 of PODNet (arthurdouillard/incremental_learning.pytorch, imagenet_split/
# {train,val}_100.txt): the first 100 ILSVRC2012 classes in wnid order (labels 0-99 there and
# here); its class order (options/data/imagenet100_1order.yaml) is the seed-1993 permutation,
# `class_order=1993`.
IMAGENET100_CLASSES = (
    "n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041",
    "n01514668", "n01514859", "n01518878", "n01530575", "n01531178", "n01532829", "n01534433",
    "n01537544", "n01558993", "n01560419", "n01580077", "n01582220", "n01592084", "n01601694",
    "n01608432", "n01614925", "n01616318", "n01622779", "n01629819", "n01630670", "n01631663",
    "n01632458", "n01632777", "n01641577", "n01644373", "n01644900", "n01664065", "n01665541",
    "n01667114", "n01667778", "n01669191", "n01675722", "n01677366", "n01682714", "n01685808",
    "n01687978", "n01688243", "n01689811", "n01692333", "n01693334", "n01694178", "n01695060",
    "n01697457", "n01698640", "n01704323", "n01728572", "n01728920", "n01729322", "n01729977",
    "n01734418", "n01735189", "n01737021", "n01739381", "n01740131", "n01742172", "n01744401",
    "n01748264", "n01749939", "n01751748", "n01753488", "n01755581", "n01756291", "n01768244",
    "n01770081", "n01770393", "n01773157", "n01773549", "n01773797", "n01774384", "n01774750",
    "n01775062", "n01776313", "n01784675", "n01795545", "n01796340", "n01797886", "n01798484",
    "n01806143", "n01806567", "n01807496", "n01817953", "n01818515", "n01819313", "n01820546",
    "n01824575", "n01828970", "n01829413", "n01833805", "n01843065", "n01843383", "n01847000",
    "n01855032", "n01855672",
)

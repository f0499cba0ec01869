"""VTAB-1k (Zhai et al. 2019) with the standard 800/200 lists, from the ArrayRecord files
`ml_pipelines.prep.vtab` writes.

`vtab` (config.data.task, data_dir = the prep command's out_dir): splits train800, val200,
train800val200 (the paper's training set) and test. No augmentation (the SNELL / NOAH recipe:
`--no_aug --direct_resize`, images already resized to 224 x 224 by the prep); ImageNet mean/std.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.imagenet import MEAN, STD
from ml_pipelines.data.records import RecordSource
from ml_pipelines.prep.vtab import TASKS, check_task


@data.register("vtab")
def vtab(config, split: str) -> data.Dataset:
  task = check_task(config.get("task", ""))
  root = os.path.expanduser(config.get("data_dir") or "data/vtab-1k")
  source = RecordSource(os.path.join(root, task), split, prepare_hint=(
      f"python -m ml_pipelines.prep.vtab --source_dir=VTAB_1K_DIR --out_dir={root} --tasks={task}"))
  size = int(config.get("image_size", 224))

  def normalise(ex, rng=None):
    img = np.asarray(ex["image"], np.float32)
    if img.shape[:2] != (size, size):
      raise ValueError(f"vtab {task}: image of {img.shape[:2]}, expected {size} x {size} (prepare "
                       f"the task with --image_size={size})")
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": np.int32(ex["label"])}
  spec = {"image": ((size, size, 3), np.float32), "label": ((), np.int32)}
  return data.Dataset(source=source, element_spec=spec,
                      preprocess=normalise, eval_preprocess=normalise,
                      info={"num_classes": TASKS[task]})

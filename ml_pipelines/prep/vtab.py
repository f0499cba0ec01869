"""Prepares VTAB-1k (Zhai et al. 2019) as ArrayRecord for the `vtab` dataset, from the extracted
copy with the standard 800/200 lists that NOAH / SSF / SNELL read (`vtab-1k/<task>/` with the
images and `train800.txt`, `val200.txt`, `train800val200.txt`, `test.txt`, lines
"relative/path label").

    python -m ml_pipelines.prep.vtab --source_dir=~/vtab-1k --out_dir=data/vtab-1k \
        [--tasks=cifar,dtd] [--image_size=224]

Writes `<out_dir>/<task>/<split>.array_record-*` with {"image": uint8 [S, S, 3] (resized straight
to S x S, bicubic: the code's `--direct_resize`), "label": int32} for the splits train800,
val200, train800val200 and test.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from ml_pipelines.data import records

# Task directory -> number of classes (VTAB-1k as distributed with NOAH / SSF / SNELL).
TASKS = {"caltech101": 102, "cifar": 100, "dtd": 47, "oxford_flowers102": 102,
         "oxford_iiit_pet": 37, "svhn": 10, "sun397": 397, "patch_camelyon": 2, "eurosat": 10,
         "resisc45": 45, "diabetic_retinopathy": 5, "clevr_count": 8, "clevr_dist": 6, "dmlab": 6,
         "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18,
         "smallnorb_ele": 9}
SPLITS = ("train800", "val200", "train800val200", "test")


def check_task(task: str) -> str:
  """`task`, or a ValueError listing the valid VTAB-1k task names."""
  if task not in TASKS:
    raise ValueError(f"Unknown VTAB-1k task {task!r}; valid tasks: {', '.join(TASKS)}")
  return task


def read_list(path: str) -> list[tuple[str, int]]:
  items = []
  with open(path) as f:
    for line in f:
      parts = line.split()
      if parts:
        items.append((parts[0], int(parts[1])))
  return items


def load_image(path: str, size: int) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as img:
    return np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), np.uint8)


def prepare_task(source_dir: str, out_dir: str, task: str, size: int = 224) -> dict[str, int]:
  """Writes every split of `task`; returns split -> number of examples."""
  task_dir = os.path.join(source_dir, check_task(task))
  counts = {}
  for split in SPLITS:
    lst = os.path.join(task_dir, f"{split}.txt")
    if not os.path.exists(lst):
      raise FileNotFoundError(f"{lst} is missing (expected the VTAB-1k lists {', '.join(SPLITS)}).")
    items = read_list(lst)
    examples = ({"image": load_image(os.path.join(task_dir, p), size), "label": np.int32(y)}
                for p, y in items)
    records.write(os.path.join(out_dir, task), split, examples)
    counts[split] = len(items)
    print(f"{task}/{split}: {len(items)} examples -> {os.path.join(out_dir, task)}", flush=True)
  return counts


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
  p.add_argument("--image_size", type=int, default=224)
  a = p.parse_args(argv)
  for task in a.tasks.split(","):
    prepare_task(os.path.expanduser(a.source_dir), os.path.expanduser(a.out_dir), task,
                 a.image_size)


if __name__ == "__main__":
  main()

"""Class-incremental digits demo (no download, CPU): 5 tasks of 2 classes (class order seed 1993),
every method from one small extractor "pretrained" on the digits turned by 90 degrees; prints
(method | AvgAcc | final acc | forgetting | BWT | task-id acc), writes it as markdown and a PNG of
each method's accuracy matrix A[i][j] (row i: after training task i; column j: test data of task j).

    python -m ml_pipelines.jobs.continual_demo [--workdir=workdirs/continual_demo] [--steps=40]
        [--methods=finetune,replay,...] [--cpu_devices=N]

Methods: the `class_incremental` baselines (configs/continual/baselines.py:METHOD: fine-tune,
replay, LwF, iCaRL with NME, joint = upper bound), frozen extractor + per-task heads and ACL
(configs/continual/acl.py:digits_frozen_heads / digits) and the adaptive-KD method
(configs/continual/adaptive_kd.py:digits, [inferred] formulation) with its ablations
(akd_no_integration, akd_no_uncertainty, akd_no_cutmix). Memory 40 exemplars (herding) wherever a
method replays. `--steps` sets the steps per task (ACL: per phase).
"""
from __future__ import annotations

import json
import os
import time

from ml_pipelines.jobs import common

METHODS = ("finetune", "replay", "lwf", "icarl", "joint", "frozen_heads", "acl", "adaptive_kd",
           "akd_no_integration", "akd_no_uncertainty", "akd_no_cutmix")
ABLATIONS = {"akd_no_integration": "integration", "akd_no_uncertainty": "uncertainty",
             "akd_no_cutmix": "exemplar_cutmix"}


def _scale_stages(c, steps: int):
  from configs.continual import common as cl_common
  rows = []
  for s in c.stages:
    rows.append(dict(s, steps=steps if s["task"].get("phase", "adapters") != "heads"
                     else steps))
  return cl_common.with_stages(c, tuple(rows))


def pretrain_config(steps: int):
  c = common.load_config("continual", "baselines", "finetune")
  c.data.name = "digits_rotated"
  c.task.update(dict(base_classes=10, increment=10))  # one task of all 10 rotated digits
  from configs.continual import common as cl_common
  return cl_common.with_stages(c, cl_common.task_stages(1, steps))


def config_for(method: str, steps: int, pretrained: str):
  if method in ("frozen_heads", "acl"):
    c = common.load_config("continual", "acl", "digits_frozen_heads" if method == "frozen_heads"
                           else "digits")
    c.init_from.path = pretrained
  elif method == "adaptive_kd" or method in ABLATIONS:
    c = common.load_config("continual", "adaptive_kd", "digits")
    if method in ABLATIONS:
      c.task[ABLATIONS[method]] = False
    c.init_from = dict(path=pretrained, converter="ours", skip=r"^(fc|integration)", strict=False)
  else:
    c = common.load_config("continual", "baselines", method)
    c.init_from = dict(path=pretrained, converter="ours", skip=r"^fc/", strict=False)
  return _scale_stages(c, steps)


def heatmaps(results: dict[str, dict], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  n = len(results)
  cols = min(4, n)
  rows = (n + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, (name, r) in zip(axes.flat, results.items()):
    acc = np.asarray(r["acc"], float)
    ax.axis("on")
    ax.imshow(np.ma.masked_invalid(acc), vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(acc):
      if np.isfinite(v):
        ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.5 else "black")
    ax.set_title(f"{name}\nAvgAcc {100 * r['average_incremental_accuracy']:.1f}", fontsize=9)
    ax.set_xlabel("test task j")
    ax.set_ylabel("after task i")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  p = common.parser(__doc__, workdir="workdirs/continual_demo", methods=METHODS)
  p.add_argument("--steps", type=int, default=40, help="steps per task")
  p.add_argument("--pretrain_steps", type=int, default=150)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  os.makedirs(args.workdir, exist_ok=True)
  t0 = time.time()
  pretrained = os.path.join(args.workdir, "pretrain_rotated")
  if not os.path.isdir(os.path.join(pretrained, "checkpoints")):
    train.train_and_evaluate(pretrain_config(args.pretrain_steps), pretrained)
  results = {}
  for method in args.methods.split(","):
    work = os.path.join(args.workdir, method)
    train.train_and_evaluate(config_for(method, args.steps, pretrained), work)
    with open(os.path.join(work, "continual.json")) as f:
      results[method] = json.load(f)
  header = ["method", "AvgAcc", "final acc", "forgetting", "BWT", "task-id acc"]
  rows = []
  for m, r in results.items():
    tid = r.get("task_id_accuracy")
    rows.append([m, f"{100 * r['average_incremental_accuracy']:.1f}",
                 f"{100 * r['final_average_accuracy']:.1f}", f"{100 * r['forgetting']:.1f}",
                 f"{100 * r['backward_transfer']:.1f}", "-" if tid is None else f"{100 * tid:.1f}"])
  table = common.markdown_table(header, rows)
  png = os.path.join(args.workdir, "accuracy_matrices.png")
  heatmaps(results, png)
  with open(os.path.join(args.workdir, "table.md"), "w") as f:
    f.write(table + "\n")
  print(table)
  print(f"\n{png}\nwall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
  main()

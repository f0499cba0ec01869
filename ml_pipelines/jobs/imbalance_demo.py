"""Long-tailed digits demo (no download, CPU): imbalance ratio 20 (class 0 keeps 140 training
images, class 9 keeps 7; balanced test set), one-stage CE, CE + class-balanced re-weighting,
two-stage CE -> cRT, and two-stage with each metric loss in stage 1 (batch-hard triplet,
class-centre triplet, SupCon) -> cRT (configs/imbalance/two_stage_metric.py:METHOD, [inferred]
formulation of arXiv 2207.06975); prints (method | accuracy | macro-F1 | mean recall | head recall
| tail recall), tail = classes 7-9, writes it as markdown and a PNG of per-class recall.

    python -m ml_pipelines.jobs.imbalance_demo [--workdir=workdirs/imbalance_demo]
        [--methods=ce,two_stage_triplet,...] [--cpu_devices=N]
"""
from __future__ import annotations

import os
import time

from ml_pipelines.jobs import common

METHODS = ("ce", "ce_reweight", "two_stage", "two_stage_triplet", "two_stage_center",
           "two_stage_supcon")


def per_class_recall(state, config, workdir) -> list[float]:
  import numpy as np
  from ml_pipelines import tasks, train
  from ml_pipelines.evaluators import classification as cls_eval
  run = train.Run(config, workdir)
  task = tasks.get(config.task.name)(config)
  out = run.env.predict(state, task._predict, config.data.eval_split)
  cm = cls_eval.confusion_matrix(out["label"], np.argmax(out["logits"], 1), 10)
  return cls_eval.per_class_recall(cm).tolist()


def main(argv=None):
  p = common.parser(__doc__, workdir="workdirs/imbalance_demo", methods=METHODS)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  t0 = time.time()
  rows, recalls = [], {}
  for method in args.methods.split(","):
    c = common.load_config("imbalance", "two_stage_metric", method)
    work = os.path.join(args.workdir, method)
    r = train.train_and_evaluate(c, work)
    recalls[method] = per_class_recall(r["state"], c, work)
    rows.append([method] + [f"{100 * r[f'eval/{k}']:.1f}" for k in (
        "accuracy", "macro_f1", "mean_class_recall", "head_recall", "tail_recall")])
  table = common.markdown_table(["method", "accuracy", "macro-F1", "mean recall", "head recall",
                                 "tail recall"], rows)
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 3.5))
  for m, rec in recalls.items():
    ax.plot(range(10), rec, marker="o", label=m)
  ax.set_xlabel("class (training images: 140 -> 7)")
  ax.set_ylabel("test recall")
  ax.legend(fontsize=7)
  fig.tight_layout()
  png = os.path.join(args.workdir, "per_class_recall.png")
  fig.savefig(png, dpi=110)
  with open(os.path.join(args.workdir, "table.md"), "w") as f:
    f.write(table + "\n")
  print(table)
  print(f"\n{png}\nwall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
  main()

"""RCPMOD vs reconstruction-only vs plain contrastive on scikit-learn digits as two views (the 64
pixels; 32 row / column / block summaries) with the official outliers (2 / 5 / 8 % class,
attribute and class-attribute) and 30% missing views: ROC-AUC over data seeds.

    python -m ml_pipelines.jobs.rcpmod_demo --workdir=/tmp/rcpmod_demo
    python -m ml_pipelines.jobs.rcpmod_demo --seeds=5 --epochs=60 --width=1024

Each row trains `configs/outlier/rcpmod.py:digits,<variant>` through the trainer; `--width` and
`--epochs` shrink the official [F, 1024, 1024, 64] encoders and the schedule for a quick CPU run
(the cadences scale with the epochs: kNN tables and imputation from epoch epochs // 3). A bar chart
of the mean AUC (with the spread over seeds) is written.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ml_pipelines.jobs import common

METHODS = ("recon_only", "contrastive", "rcpmod")


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3))
  names = list(results)
  ax.bar(names, [np.mean(results[n]) for n in names],
         yerr=[np.std(results[n]) for n in names], capsize=4)
  ax.set_ylabel("ROC-AUC")
  ax.set_ylim(0.4, 1.0)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main(argv=None) -> None:
  p = common.parser(__doc__, workdir=None, methods=METHODS)
  p.add_argument("--seeds", type=int, default=5, help="data seeds 1..seeds (the official 5)")
  p.add_argument("--epochs", type=int, default=60)
  p.add_argument("--width", type=int, default=1024, help="hidden width of the encoders")
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  args.workdir = args.workdir or tempfile.mkdtemp(prefix="rcpmod_demo_")
  results = {}
  for variant in args.methods.split(","):
    results[variant] = []
    for seed in range(1, args.seeds + 1):
      c = common.load_config("outlier", "rcpmod", f"digits,{variant}")
      steps_per_epoch = 1797 // c.batch_size
      c.total_steps = args.epochs * steps_per_epoch
      c.eval_every, c.checkpoint_every, c.log_every = c.total_steps, 0, c.total_steps
      c.data.data_seed, c.seed = seed, seed
      c.model.archs = tuple((a[0], args.width, args.width, a[-1]) for a in c.model.archs)
      third = max(args.epochs // 3, 1)
      c.task.change_knn_epoch = c.task.impute_from = third
      if variant == "rcpmod":  # the warm-up reaches the strength it has at epoch 100 officially
        c.task.warmup_max = c.task.warmup_max * 100 / args.epochs
      out = train.train_and_evaluate(c, os.path.join(args.workdir, f"{variant}_{seed}"))
      results[variant].append(out["eval/auc"])
      print(variant, seed, round(out["eval/auc"], 4), flush=True)
  rows = [[n, f"{np.mean(v):.4f} ± {np.std(v):.4f}", " ".join(f"{a:.3f}" for a in v)]
          for n, v in results.items()]
  table = common.markdown_table(["method", f"AUC (mean ± std, {args.seeds} seeds)", "per seed"],
                                rows)
  print("\n" + table)
  with open(os.path.join(args.workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  plot(results, os.path.join(args.workdir, "auc.png"))
  print(f"\ntable: {args.workdir}/results.md\nplot:  {args.workdir}/auc.png")


if __name__ == "__main__":
  main()

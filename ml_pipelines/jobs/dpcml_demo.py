"""DPCML (C = 3 vectors per user) vs CML (C = 1) on generated multi-interest users whose item
categories are imbalanced (40/20/10/10/8/6/4/2 %): recall of held-out minority-category items.

    python -m ml_pipelines.jobs.dpcml_demo --workdir=/tmp/dpcml_demo
    python -m ml_pipelines.jobs.dpcml_demo --steps=300

Each row trains `configs/recsys/dpcml.py:multi_interest,<variant>` through the trainer (uniform
negatives, 10 triplets per pair) and evaluates on the validation items; a bar chart is written.
"""
from __future__ import annotations

import os
import tempfile

from ml_pipelines.jobs import common

METHODS = ("cml", "dpcml1")
COLUMNS = ("P@3", "R@3", "NDCG@3", "MAP", "minority_R@10")


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.2))
  width = 0.8 / len(results)
  for i, (name, row) in enumerate(results.items()):
    ax.bar([j + i * width for j in range(len(COLUMNS))], [row[c] for c in COLUMNS], width,
           label=name)
  ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(COLUMNS))])
  ax.set_xticklabels(COLUMNS)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main(argv=None) -> None:
  p = common.parser(__doc__, workdir=None, methods=METHODS)
  p.add_argument("--steps", type=int, default=0, help="override total_steps (0: the config's)")
  p.add_argument("--num_vectors", type=int, default=3, help="C of the DPCML rows")
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  args.workdir = args.workdir or tempfile.mkdtemp(prefix="dpcml_demo_")
  results = {}
  for variant in args.methods.split(","):
    c = common.load_config("recsys", "dpcml", f"multi_interest,{variant}")
    if c.model.num_vectors > 1:
      c.model.num_vectors = args.num_vectors
    c.eval_every, c.checkpoint_every = 0, 0
    if args.steps:
      c.total_steps = args.steps
    out = train.train_and_evaluate(c, os.path.join(args.workdir, variant))
    name = f"{variant} (C={c.model.num_vectors})"
    results[name] = {k: out[f"eval/{k}"] for k in COLUMNS}
    print(name, {k: round(v, 4) for k, v in results[name].items()}, flush=True)
  rows = [[n, *[f"{r[c]:.4f}" for c in COLUMNS]] for n, r in results.items()]
  table = common.markdown_table(["method", *COLUMNS], rows)
  print("\n" + table)
  with open(os.path.join(args.workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  plot(results, os.path.join(args.workdir, "metrics.png"))
  print(f"\ntable: {args.workdir}/results.md\nplot:  {args.workdir}/metrics.png")


if __name__ == "__main__":
  main()

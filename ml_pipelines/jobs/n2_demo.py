"""N² vs GCN vs MLP on generated graphs: contextual SBMs at homophily 0.9 and 0.2 (node tasks) and
the colour-pair set whose label is a global property (graph task); one table and a bar chart.

    python -m ml_pipelines.jobs.n2_demo --workdir=/tmp/n2_demo
    python -m ml_pipelines.jobs.n2_demo --methods=n2,gcn --sets=csbm_hetero,far_pair --steps=50

Each cell trains `configs/graph/n2.py:<set>,<model>` through the trainer (the embedded N² size:
d_model 32, q_dim 16, n_q 4, 16 pseudo nodes, T = 4) and reports the test accuracy; `gcn` is the
configs' 2-layer GCN, `gcn4` the same with 4 GCN layers, N²'s depth.
- CSBM: 2,000 nodes in 2 classes, mean degree 10, features a class indicator plus N(0, 1.5²)
  noise in 32 dimensions, so the features alone give about 65% and the graph must be used at both
  homophilies. At 0.2 the neighbours mostly belong to the other class: averaging them into the
  node (GCN) blurs it, keeping the node's own state beside its neighbourhood (N²'s residual
  states) does not.
- colour pair: do two marked nodes more than 4 hops apart share a colour? (`data/graph_sets.py`:
  no node of a 2-layer local model sees both, and a mean-pool with a linear head cannot compare
  them.) `far_pair` (are the marked nodes more than 4 hops apart) is available with `--sets`.
"""
from __future__ import annotations

import os
import tempfile

from ml_pipelines.jobs import common

SETS = {"csbm": "CSBM, homophily 0.9", "csbm_hetero": "CSBM, homophily 0.2",
        "colour_pair": "colour pair (> 4 hops)", "far_pair": "far pair (> 4 hops)"}
DEFAULT_SETS = ("csbm", "csbm_hetero", "colour_pair")
METHODS = ("n2", "gcn", "gcn4", "mlp")
GCN4 = {"gcn": (64, 64, 64), "gcn_graph_classifier": (64, 64, 64, 64)}  # 4 GCN layers (N²'s T)


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  sets = list(next(iter(results.values())))
  fig, ax = plt.subplots(figsize=(7, 3.5))
  width = 0.8 / len(results)
  for i, (method, accs) in enumerate(results.items()):
    ax.bar([j + i * width for j in range(len(sets))], [accs[s] for s in sets], width, label=method)
  ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(sets))])
  ax.set_xticklabels([SETS[s] for s in sets])
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main(argv=None) -> None:
  p = common.parser(__doc__, workdir=None, methods=METHODS)
  p.add_argument("--sets", default=",".join(DEFAULT_SETS))
  p.add_argument("--steps", type=int, default=0, help="override total_steps (0: the configs')")
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  args.workdir = args.workdir or tempfile.mkdtemp(prefix="n2_demo_")
  results = {}
  for method in args.methods.split(","):
    results[method] = {}
    for name in args.sets.split(","):
      c = common.load_config("graph", "n2", f"{name},{method.replace('gcn4', 'gcn')}")
      if method == "gcn4":
        c.model.hidden = GCN4[c.model.name]
      c.eval_every, c.checkpoint_every = 0, 0
      if args.steps:
        c.total_steps = args.steps
      out = train.train_and_evaluate(c, os.path.join(args.workdir, f"{name}_{method}"))
      results[method][name] = out["eval/accuracy"]
      print(f"{name} {method}: {out['eval/accuracy']:.3f}", flush=True)
  sets = args.sets.split(",")
  table = common.markdown_table(["model", *[SETS[s] for s in sets]],
                                [[m, *[f"{r[s]:.3f}" for s in sets]] for m, r in results.items()])
  print("\n" + table)
  with open(os.path.join(args.workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  plot(results, os.path.join(args.workdir, "accuracy.png"))
  print(f"\ntable: {args.workdir}/results.md\nplot:  {args.workdir}/accuracy.png")


if __name__ == "__main__":
  main()

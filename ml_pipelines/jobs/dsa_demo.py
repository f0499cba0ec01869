"""DSA demo on scikit-learn's digits with 2 labels per class (no download, CPU): single-head
FreeMatch vs DSA + FreeMatch (fixed random adapters, the official code's reading) and, with
`--methods=...,dsa_trained`, DSA with trained adapters (the paper's reading). Prints one table.

    python -m ml_pipelines.jobs.dsa_demo [--workdir=workdirs/dsa_demo] [--steps=600]
        [--methods=freematch,dsa]

Each method runs `configs/ssl/<freematch|dsa_freematch>.py:digits` through the trainer (WRN-10-2 on
16x16 digits, 20 labeled images, 16 labeled + 48 unlabeled per step). Columns:
- test acc: the test accuracy of the mean-logit ensemble (of the single head for FreeMatch), with
  the trained weights and with the EMA weights; "best head" the best single head; "count-weighted"
  the official code's ensemble (heads weighted per test batch by their agreement with the mean);
- pseudo-labels: during training, over the last sixth of the run (the trainer's logged means), on
  the unlabeled rows of each batch (model in train mode, weak views, as the code computes them;
  their labels are read only for this score): the accuracy of the ensemble pseudo-labels that pass
  the count threshold, the fraction that pass ("kept"), and the best single head's accuracy on the
  samples its own FreeMatch mask keeps;
- disagreement: the mean over head pairs of the fraction of test images on which they differ.
"""
from __future__ import annotations

import time

from ml_pipelines.jobs import common

METHODS = ("freematch", "dsa", "dsa_trained")
DEFAULT = ("freematch", "dsa")


def config_for(method: str, steps: int):
  c = common.load_config("ssl", "freematch" if method == "freematch" else "dsa_freematch",
                         "digits")
  if method == "dsa_trained":
    c.model.train_adapters = True
  c.total_steps = steps
  c.eval_every = c.checkpoint_every = steps
  c.log_every = max(steps // 6, 1)
  return c


def pseudo_labels(workdir: str) -> dict[str, float]:
  """The last logged training means of the pseudo-label metrics (see the module docstring)."""
  import json
  import os
  last = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      if "train/pseudo_label_accuracy" in rec:
        last = rec
  heads = [v for k, v in last.items() if k.startswith("train/pseudo_label_accuracy_head")]
  return {"ensemble_acc": last["train/pseudo_label_accuracy"], "kept": last["train/mask_rate"],
          "best_head_acc": max(heads)}


def table(rows) -> str:
  return common.markdown_table(
      ["method", "test acc", "test acc (EMA)", "best head", "count-weighted", "pseudo-label acc",
       "kept", "best head pseudo-label acc", "disagreement", "seconds"],
      [[name, *(f"{r[k]:.3f}" for k in ("eval/accuracy_mean_logit", "eval/ema_accuracy_mean_logit",
                                        "eval/accuracy_best_head",
                                        "eval/accuracy_count_weighted")),
        f"{pl['ensemble_acc']:.3f}", f"{pl['kept']:.2f}", f"{pl['best_head_acc']:.3f}",
        f"{r['eval/disagreement']:.3f}", f"{secs:.0f}"] for name, r, pl, secs in rows])


def main(argv=None) -> None:
  parser = common.parser(__doc__, workdir="workdirs/dsa_demo", methods=METHODS)
  parser.set_defaults(methods=",".join(DEFAULT))
  parser.add_argument("--steps", type=int, default=600)
  args = parser.parse_args(argv)
  common.start_jax(args)
  import os

  from ml_pipelines import train
  rows = []
  for method in args.methods.split(","):
    if method not in METHODS:
      raise SystemExit(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    workdir = os.path.join(args.workdir, method)
    config = config_for(method, args.steps)
    start = time.time()
    result = train.train_and_evaluate(config, workdir)
    pl = pseudo_labels(workdir)
    rows.append((method, result, pl, time.time() - start))
  print("\n" + table(rows))


if __name__ == "__main__":
  main()

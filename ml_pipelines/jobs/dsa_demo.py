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
- pseudo-labels: on the 1,437 training images (weak view = the image itself, model in eval mode, the
  run's final FreeMatch state and count threshold): the accuracy of the ensemble pseudo-labels that
  pass the count threshold and the fraction that pass ("kept"), and the best single head's accuracy
  on the samples its own FreeMatch mask keeps;
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


def pseudo_labels(config, state, workdir) -> dict[str, float]:
  """Pseudo-label quality on the training split (see the module docstring)."""
  import jax.numpy as jnp
  import numpy as np

  from losses import ssl
  from ml_pipelines import train
  from ml_pipelines.tasks.freematch import FreeMatch, head_logits

  run = train.Run(config, workdir)
  out = run.env.predict(state, lambda m, b: {"logits": jnp.moveaxis(head_logits(m, b["image"]),
                                                                    0, 1)},
                        config.data.train_split)
  logits = jnp.moveaxis(jnp.asarray(out["logits"]), 1, 0)  # [S, N, K]
  labels = np.asarray(run.env.dataset(config.data.train_split).source.arrays["label"])[
      out["index"]]
  task = FreeMatch(config)
  extra = state["extra"]
  masks, preds = [], []
  for s in range(logits.shape[0]):
    m, p = ssl.freematch_mask(logits[s], extra["tau"][s], extra["p"][s], task.alpha)
    masks.append(np.asarray(m))
    preds.append(np.asarray(p))
  thr = ssl.count_threshold((config.total_steps - 1) // task.steps_per_epoch, *task.count_thr)
  targets, keep = ssl.ensemble_pseudo_labels(logits, jnp.asarray(np.stack(masks)), thr)
  keep = np.asarray(keep).astype(bool)
  head_acc = [float(np.mean(p[m > 0] == labels[m > 0])) if m.any() else float("nan")
              for p, m in zip(preds, masks)]
  return {"ensemble_acc": float(np.mean(np.asarray(targets)[keep] == labels[keep])),
          "kept": float(np.mean(keep)), "best_head_acc": float(np.nanmax(head_acc))}


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
    pl = pseudo_labels(config, result["state"], workdir)
    rows.append((method, result, pl, time.time() - start))
  print("\n" + table(rows))


if __name__ == "__main__":
  main()

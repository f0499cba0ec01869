"""STE vs ReSTE on the embedded digits: accuracy and the two ReSTE indicators (Wu et al. ICCV 2023).

Trains the same binary network once per estimator through the shared trainer and prints a table of
test accuracy, estimating error (sum_layers ||surrogate(w) - sign(w)||_2) and gradient stability
(sum_layers Var(|dL/dw|)), both measured by the `bnn_classification` task at the final step.

    python -m ml_pipelines.jobs.bnn_compare --model=bnn_resnet20 --estimators=ste,clipped_ste,reste
"""
from __future__ import annotations

import os
import tempfile

from ml_pipelines.jobs import common


def compare(model: str, estimators: list[str], steps: int, seed: int, workdir: str,
            width: int | None = None) -> list[dict]:
  from ml_pipelines import train
  rows = []
  for est in estimators:
    cfg = common.load_config("bnn", model, "digits")
    cfg.model.estimator = est
    cfg.total_steps = steps
    cfg.eval_every = cfg.checkpoint_every = steps
    cfg.seed = seed
    if width:
      cfg.model.width = width
    out = train.train_and_evaluate(cfg, os.path.join(workdir, f"{model}_{est}_s{seed}"))
    rows.append({"estimator": est, "accuracy": out["eval/accuracy"],
                 "estimating_error": out["eval/estimating_error"],
                 "gradient_stability": out["eval/gradient_stability"]})
  return rows


def table(model: str, rows: list[dict]) -> str:
  return common.markdown_table(
      ["model", "estimator", "test accuracy", "estimating error", "gradient stability"],
      [[model, r["estimator"], f"{r['accuracy']:.4f}", f"{r['estimating_error']:.3f}",
        f"{r['gradient_stability']:.3e}"] for r in rows])


def main(argv=None):
  p = common.parser(__doc__, workdir=None, methods=("ste", "clipped_ste", "reste"),
                    methods_flag="estimators")
  p.add_argument("--model", default="bnn_resnet20",
                 choices=["bnn_resnet20", "bnn_resnet18", "bnn_vgg_small"])
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--width", type=int, default=None, help="override the digits config's width")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  common.start_jax(a)
  workdir = a.workdir or tempfile.mkdtemp(prefix="bnn_compare_")
  rows = compare(a.model, a.estimators.split(","), a.steps, a.seed, workdir, a.width)
  print(table(a.model, rows))


if __name__ == "__main__":
  main()

"""Mean re-ID metrics over separately trained runs: RegDB's protocol reports the mean over its 10
random train/test splits, each trained on its own (`configs/reid/sgiel.py:regdb,trial=<t>`).

    python -m ml_pipelines.jobs.reid_trials /tmp/sgiel_regdb_{1..10}

Reads each workdir's `metrics.jsonl`, takes its last evaluation (`eval/...` keys without the
gallery trials' `_std` spreads), prints one row per run and their mean
(`evaluators.reid.mean_over_trials`).
"""
from __future__ import annotations

import argparse
import json
import os

from ml_pipelines.evaluators import reid as reid_eval
from ml_pipelines.jobs.common import markdown_table


def last_evaluation(workdir: str) -> dict[str, float]:
  """The last `metrics.jsonl` row with evaluation metrics, as `{metric: value}`."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: is {workdir} a finished run's workdir?")
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  evals = [{k[len("eval/"):]: v for k, v in r.items()
            if k.startswith("eval/") and not k.endswith("_std")} for r in rows]
  evals = [e for e in evals if e]
  if not evals:
    raise ValueError(f"{path} holds no evaluation")
  return evals[-1]


def summary(workdirs: list[str]) -> tuple[list[dict[str, float]], dict[str, float]]:
  per_run = [last_evaluation(w) for w in workdirs]
  names = set(per_run[0])
  for w, m in zip(workdirs, per_run):
    if set(m) != names:
      raise ValueError(f"{w}: metrics {sorted(m)} differ from the first run's {sorted(names)}")
  return per_run, reid_eval.mean_over_trials(per_run)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("workdirs", nargs="+")
  args = p.parse_args(argv)
  per_run, mean = summary(args.workdirs)
  names = sorted(mean)
  rows = [[os.path.basename(os.path.normpath(w))] + [f"{100 * m[k]:.2f}" for k in names]
          for w, m in zip(args.workdirs, per_run)]
  rows.append(["mean"] + [f"{100 * mean[k]:.2f}" for k in names])
  print(markdown_table(["run"] + names, rows))


if __name__ == "__main__":
  main()

"""Embedded deep-hashing demo: trains ADSH, ExchNet, SEMICON, DMIH and MCH on scikit-learn's digits
(200 queries / 1,597 database images, no download) through the trainer and prints one table.

    python -m ml_pipelines.jobs.hashing_demo [--bits=12] [--workdir=/tmp/hashing_demo] [--methods=adsh,mch]
        [--cpu_devices=N]

Each method uses `configs/hashing/<method>.py:digits,<bits>` (tiny backbone, 12 outer iterations).
"""
from __future__ import annotations

import argparse
import os
import time

METHODS = ("adsh", "exchnet", "semicon", "dmih", "mch")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--bits", type=int, default=12)
  parser.add_argument("--workdir", default="/tmp/hashing_demo")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--cpu_devices", type=int, default=0)
  args = parser.parse_args(argv)
  import jax
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  from ml_pipelines.trainer import config as config_lib
  from ml_pipelines import train
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "hashing")
  rows = []
  for method in args.methods.split(","):
    config = config_lib.load(os.path.join(root, f"{method}.py") + f":digits,{args.bits}")
    workdir = os.path.join(args.workdir, f"{method}_{args.bits}")
    start = time.time()
    out = train.train_and_evaluate(config, workdir)
    rows.append((method, out["eval/mAP"], out["eval/precision@r2"], out["eval/recall@r2"],
                 out["eval/buckets@r2"], time.time() - start))
  print(f"\nDeep hashing on digits, {args.bits} bits (mAP over the whole database; "
        "precision / recall within Hamming radius 2):")
  print(f"| method  | mAP    | precision@r2 | recall@r2 | buckets@r2 | time (s) |")
  print(f"|---------|--------|--------------|-----------|------------|----------|")
  for m, ap, p, r, b, t in rows:
    print(f"| {m:<7} | {ap:.4f} | {p:.4f}       | {r:.4f}    | {b:10.1f} | {t:8.1f} |")


if __name__ == "__main__":
  main()

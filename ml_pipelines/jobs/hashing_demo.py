"""Embedded deep-hashing demo: trains ADSH, ExchNet, SEMICON, DMIH and MCH on scikit-learn's digits
(200 queries / 1,597 database images, no download) through the trainer and prints one table.

    python -m ml_pipelines.jobs.hashing_demo [--bits=12] [--workdir=/tmp/hashing_demo] [--methods=adsh,mch]
        [--cpu_devices=N]

Each method uses `configs/hashing/<method>.py:digits,<bits>` (tiny backbone, 12 outer iterations);
its workdir `<workdir>/<method>_<bits>/` gets the PR curve and the exported codes.
"""
from __future__ import annotations

import os
import time

from ml_pipelines.jobs import common

METHODS = ("adsh", "exchnet", "semicon", "dmih", "mch")


def main(argv=None) -> None:
  parser = common.parser(__doc__, workdir="/tmp/hashing_demo", methods=METHODS)
  parser.add_argument("--bits", type=int, default=12)
  args = parser.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  rows = []
  for method in args.methods.split(","):
    config = common.load_config("hashing", method, f"digits,{args.bits}")
    start = time.time()
    out = train.train_and_evaluate(config, os.path.join(args.workdir, f"{method}_{args.bits}"))
    rows.append([method, *(f"{out[f'eval/{k}']:.4f}" for k in ("mAP", "precision@r2", "recall@r2")),
                 f"{out['eval/buckets@r2']:.1f}", f"{time.time() - start:.1f}"])
  print(f"\nDeep hashing on digits, {args.bits} bits (mAP over the whole database; "
        "precision / recall within Hamming radius 2):")
  print(common.markdown_table(
      ["method", "mAP", "precision@r2", "recall@r2", "buckets@r2", "time (s)"], rows))


if __name__ == "__main__":
  main()

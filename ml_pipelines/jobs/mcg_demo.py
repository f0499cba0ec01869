"""MCG demo on 32-frame `moving_shapes` QA with answer compositions held out of training (no
download, CPU): ALPRO's classifier over the training answers against MCG's answer generator, both
trained from scratch through the trainer with the tiny towers of configs/videoqa/common.py and the
same data (32-frame videos, 8 frames read by head-tail sampling for training, uniform for tests)
and the same vision tower: a tiny TimeSformer (2 blocks of 128, patch 8), ALPRO's kind of tower,
because it sees the order of the frames (the per-frame ViT path pools the frames' tokens as a set,
which cannot tell "moves left" from "moves right").

    python -m ml_pipelines.jobs.mcg_demo [--workdir=workdirs/mcg_demo]
        [--methods=classifier,mcg] [--steps=400] [--cpu_devices=N]

Held out: the answers "red square", "green triangle" and "blue circle" (to "what moves <dir> ?").
Their questions are dropped from training, but every colour and shape word is seen in other
answers ("red circle", "blue square", ...). The classifier's classes are the training answers, so
it cannot name a held-out composition; the generator writes answers word by word and can. The
table: accuracy on the seen question types (action: "what is the red circle doing ?", entity:
"what moves left ?" with a seen answer), on the held-out compositions, and overall.
"""
from __future__ import annotations

import json
import os
import time

from ml_pipelines.jobs import common

HELD_OUT = ("red square", "green triangle", "blue circle")
METHODS = {"classifier": ("classifier", "moving_shapes", "ALPRO classifier (train answers)"),
           "mcg": ("mcg", "moving_shapes32", "MCG generator (greedy)")}


def config_for(method: str, steps: int, train_size: int, test_size: int):
  name, arg, _ = METHODS[method]
  c = common.load_config("videoqa", name, arg)
  c.total_steps, c.batch_size, c.eval_batch_size = steps, 32, 100
  c.log_every, c.eval_every, c.checkpoint_every = max(1, steps // 10), steps, steps
  c.optimizer.warmup_steps = min(50, steps // 10)
  c.data.update(frames=32, num_frames=8, train_sampling="headtail", train_size=train_size,
                test_size=test_size, held_out=HELD_OUT)
  c.model.vision = dict(common.load_config("videoqa", "mcg", "moving_shapes32").model.vision)
  return c


def main(argv=None):
  p = common.parser(__doc__, workdir="workdirs/mcg_demo", methods=tuple(METHODS))
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--train_size", type=int, default=1000)
  p.add_argument("--test_size", type=int, default=300)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  rows, results, t0 = [], {}, time.time()
  for m in args.methods.split(","):
    start = time.time()
    out = train.train_and_evaluate(config_for(m, args.steps, args.train_size, args.test_size),
                                   os.path.join(args.workdir, m))
    results[m] = {k: float(x) for k, x in out.items() if k != "state"}
    rows.append([METHODS[m][2]] + [f"{100 * out['eval/accuracy/' + k]:.1f}" for k in (
        "action", "entity", "held-out")] + [f"{100 * out['eval/accuracy']:.1f}",
                                            f"{time.time() - start:.0f}"])
  table = common.markdown_table(["method", "action (seen)", "entity (seen)",
                                 "held-out compositions", "overall", "s"], rows)
  print(f"\n{table}\n({time.time() - t0:.0f} s)")
  with open(os.path.join(args.workdir, "mcg_demo.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.workdir, "mcg_demo.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

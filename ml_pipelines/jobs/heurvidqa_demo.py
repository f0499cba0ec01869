"""HeurVidQA demo on `moving_shapes` QA (no download, CPU): ALPRO's classifier against HeurVidQA
with the heuristics injected through the input, the loss or both, trained on a small QA split.

    python -m ml_pipelines.jobs.heurvidqa_demo [--workdir=workdirs/heurvidqa_demo]
        [--prompter_steps=400] [--steps=300] [--train_size=200] [--test_size=300]
        [--variants=classifier,input,loss,both]

First the prompter (ALPRO's `Prompter`: a tiny TimeSformer and text encoder) is pretrained by
video-caption contrastive learning on 2,000 `moving_shapes_retrieval` videos of another seed
(`configs/videoqa/heurvidqa.py:prompter`); it is then frozen and loaded into every HeurVidQA run
(`init_from`). The QA models (per-frame ViT tokens fused by a BERT-style encoder, ALPRO's
classifier head; configs/videoqa/classifier.py) train from scratch on `train_size` videos (about 3
questions each). The classifier is HeurVidQA with `inject=none` (same initialisation, same
batches). The frame tokens carry no frame order, so on its own the QA model cannot tell "moving
left" from "moving right"; the prompter's TimeSformer can. Prints how often the prompter's top
entities / actions are the video's (recall at the number of objects) and the table (accuracy
overall and per question type, %), also written as markdown and JSON.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ml_pipelines.jobs import common

VARIANTS = {"classifier": ("none", "ALPRO classifier (heuristics off)"),
            "input": ("input", "HeurVidQA, heuristics as input tokens"),
            "loss": ("loss", "HeurVidQA, heuristic-matching loss"),
            "both": ("both", "HeurVidQA, input + loss")}


def prompter_config(steps: int, frames: int):
  c = common.load_config("videoqa", "heurvidqa", "prompter")
  c.total_steps, c.batch_size, c.eval_batch_size = steps, 32, 100
  c.log_every, c.eval_every, c.checkpoint_every = max(1, steps // 10), steps, steps
  c.optimizer.update(learning_rate=2e-3, warmup_steps=min(20, steps // 10))
  c.data.update(num_frames=frames, test_size=200)
  return c


def qa_config(variant: str, steps: int, train_size: int, test_size: int, frames: int,
              prompter_dir: str):
  c = common.load_config("videoqa", "heurvidqa", f"moving_shapes,{VARIANTS[variant][0]}")
  c.total_steps, c.batch_size, c.eval_batch_size = steps, 32, 100
  c.log_every, c.eval_every, c.checkpoint_every = max(1, steps // 10), steps, steps
  c.optimizer.warmup_steps = min(50, steps // 10)
  c.data.update(num_frames=frames, train_size=train_size, test_size=test_size)
  if variant != "classifier":  # the classifier's forward never reads the prompter
    c.init_from.path = prompter_dir
  return c


def heuristic_recall(qa, prompter) -> dict[str, float]:
  """Fraction of the test videos' entities / actions among the prompter's top-n (n objects)."""
  import jax.numpy as jnp
  from ml_pipelines.data import moving_shapes
  from ml_pipelines.data import video as video_lib
  from ml_pipelines.data import videoqa
  from ml_pipelines.tasks import heurvidqa as task_lib
  from models import heurvidqa as hm
  task = task_lib.HeurVidQA(qa)
  prompts = task.constants(None)["prompts"]
  d = {**videoqa.MS_QA_DEFAULTS, **qa.data.to_dict()}
  vids = [moving_shapes.video(d["seed"], "test", i, frames=d["frames"], size=d["size"])
          for i in range(d["test_size"])]
  index = video_lib.uniform_indices(d["frames"], d["num_frames"])
  video = jnp.asarray(np.stack([v["frames"][index] for v in vids]))
  mask = jnp.ones(video.shape[:2], bool)
  out = {}
  for kind, p in prompts.items():
    feats = hm.prompt_features(prompter, jnp.asarray(p["ids"]), jnp.asarray(p["mask"]))
    scores = np.asarray(hm.prompter_logits(prompter, video, mask, feats))
    hits = total = 0
    for v, s in zip(vids, scores):
      truth = {o.name if kind == "entity" else task.words["action"][
          moving_shapes.MOTIONS.index(o.motion)] for o in v["objects"]}
      top = {task.words[kind][j] for j in np.argsort(-s)[:len(truth)]}
      hits, total = hits + len(top & truth), total + len(truth)
    out[kind] = 100.0 * hits / total
  return out


def main(argv=None):
  p = common.parser(__doc__, workdir="workdirs/heurvidqa_demo", methods=tuple(VARIANTS),
                    methods_flag="variants")
  p.add_argument("--prompter_steps", type=int, default=400)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--train_size", type=int, default=200)
  p.add_argument("--test_size", type=int, default=300)
  p.add_argument("--frames", type=int, default=4)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  t0 = time.time()
  pdir = os.path.join(args.workdir, "prompter")
  pc = prompter_config(args.prompter_steps, args.frames)
  pout = train.train_and_evaluate(pc, pdir)
  results = {"prompter": {k: float(x) for k, x in pout.items() if k != "state"}}
  results["recall"] = heuristic_recall(
      qa_config("both", args.steps, args.train_size, args.test_size, args.frames, pdir),
      common.trained_model(pc, pout["state"]))
  print(f"prompter top-n recall (%): {results['recall']}", flush=True)
  rows = []
  for v in args.variants.split(","):
    c = qa_config(v, args.steps, args.train_size, args.test_size, args.frames, pdir)
    out = train.train_and_evaluate(c, os.path.join(args.workdir, v))
    results[v] = {k: float(x) for k, x in out.items() if k != "state"}
    rows.append([VARIANTS[v][1]] + [f"{100 * out['eval/' + m]:.1f}" for m in (
        "accuracy", "accuracy/action", "accuracy/entity")])
  table = common.markdown_table(["variant", "accuracy", "action", "entity"], rows)
  recall = results["recall"]
  note = (f"prompter: t2v R@1 {results['prompter']['eval/t2v_R@1']:.1f} on 200 test videos; "
          f"top-n recall of the videos' entities {recall['entity']:.1f} %, actions "
          f"{recall['action']:.1f} %")
  print(f"\n{note}\n{table}\n({time.time() - t0:.0f} s)")
  with open(os.path.join(args.workdir, "heurvidqa_demo.md"), "w") as f:
    f.write(f"{note}\n\n{table}\n")
  with open(os.path.join(args.workdir, "heurvidqa_demo.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

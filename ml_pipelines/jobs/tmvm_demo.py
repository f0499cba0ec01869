"""TMVM demo on `moving_shapes` retrieval (no download, CPU): CLIP4Clip's mean-pooled baseline
(K = 1, uniform masks) against K = 4 prototypes without and with the variance loss, each trained
from scratch through the trainer with the tiny towers of configs/video/common.py. Prints one table
(variant | t2v R@1 | t2v R@5 | v2t R@1 | v2t R@5 | t2v MdR), writes it as markdown, and draws the
K = 4 + variance model's prototype attention (summed over each frame's patches, per prototype) for
a few test videos as a PNG.

    python -m ml_pipelines.jobs.tmvm_demo [--workdir=workdirs/tmvm_demo] [--steps=400]
        [--variants=meanp,k4,k4_var] [--cpu_devices=N]

Every caption of a test video names one of its 2-3 objects, so a single video embedding has to
match several unrelated captions at once (the correspondence ambiguity TMVM targets).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ml_pipelines.jobs import common

VARIANTS = {"meanp": ("moving_shapes,meanp", "K=1, uniform masks (CLIP4Clip meanP)"),
            "k4": ("moving_shapes,4,0.0", "K=4, no variance loss"),
            "k4_var": ("moving_shapes,4,1.0", "K=4 + variance loss (lambda=1)")}


def config_for(variant: str, steps: int, train_size: int, test_size: int):
  c = common.load_config("video", "tmvm", VARIANTS[variant][0])
  c.total_steps, c.batch_size, c.eval_batch_size = steps, 32, 100
  c.log_every, c.eval_every, c.checkpoint_every = max(1, steps // 10), steps, steps
  c.optimizer.warmup_steps = min(50, steps // 10)
  c.data.update(num_frames=4, train_size=train_size, test_size=test_size)
  return c


def draw_attention(c, state, path: str, videos: int = 4):
  """Frames of `videos` test videos and, under them, each prototype's attention per frame."""
  import jax.numpy as jnp
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from ml_pipelines import data
  model = common.trained_model(c, state)
  ds = data.get(c.data.name)(c.data, "test")
  ex = [ds.source[i] for i in range(videos)]
  video = jnp.asarray(np.stack([e["video"] for e in ex]))
  _, attn = model.prototypes(video, jnp.asarray(np.stack([e["frame_mask"] for e in ex])))
  t, k = video.shape[1], attn.shape[-1]
  p = attn.shape[1] // t
  g = int(round(np.sqrt(p - 1)))
  maps = np.asarray(attn).reshape(videos, t, p, k)[:, :, 1:].reshape(videos, t, g, g, k)
  fig, axes = plt.subplots(videos * (k + 1), t, figsize=(1.3 * t, 1.3 * videos * (k + 1)))
  for v in range(videos):
    for f in range(t):
      axes[v * (k + 1), f].imshow(np.asarray(video[v, f]))
      for j in range(k):
        axes[v * (k + 1) + 1 + j, f].imshow(maps[v, f, :, :, j], cmap="magma",
                                            vmin=0, vmax=maps[v, :, :, :, j].max())
    axes[v * (k + 1), 0].set_ylabel(f"video {v}", fontsize=7)
    for j in range(k):
      axes[v * (k + 1) + 1 + j, 0].set_ylabel(f"proto {j}", fontsize=7)
  for a in axes.ravel():
    a.set_xticks([])
    a.set_yticks([])
  fig.suptitle("TMVM (K=4 + variance loss): prototype attention over frame patches", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  p = common.parser(__doc__, workdir="workdirs/tmvm_demo", methods=tuple(VARIANTS),
                    methods_flag="variants")
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--train_size", type=int, default=2000)
  p.add_argument("--test_size", type=int, default=500)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  rows, results, t0 = [], {}, time.time()
  for v in args.variants.split(","):
    c = config_for(v, args.steps, args.train_size, args.test_size)
    out = train.train_and_evaluate(c, os.path.join(args.workdir, v))
    results[v] = {k: float(x) for k, x in out.items() if k != "state"}
    rows.append([VARIANTS[v][1]] + [f"{out['eval/' + m]:.1f}" for m in (
        "t2v_R@1", "t2v_R@5", "v2t_R@1", "v2t_R@5", "t2v_MdR")])
    if v == "k4_var":
      draw_attention(c, out["state"], os.path.join(args.workdir, "tmvm_attention.png"))
  table = common.markdown_table(["variant", "t2v R@1", "t2v R@5", "v2t R@1", "v2t R@5",
                                 "t2v MdR"], rows)
  print(f"\n{table}\n({time.time() - t0:.0f} s)")
  with open(os.path.join(args.workdir, "tmvm_demo.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.workdir, "tmvm_demo.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

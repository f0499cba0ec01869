"""TMVM demo on `moving_shapes` retrieval (no download, CPU): CLIP4Clip's mean-pooled baseline
(K = 1, uniform masks) against K = 4 prototypes without and with the variance loss, each trained
from scratch through the trainer with the tiny towers of configs/video/common.py (a 2-layer image
tower here). Prints one table (variant | t2v R@1 | t2v R@5 | v2t R@1 | v2t R@5 | t2v MdR) with a
last row for the ceiling any model can reach (`ceiling`), writes it as markdown, and draws the
K = 4 + variance model's prototype attention (summed over each frame's patches, per prototype) for
a few test videos as a PNG.

    python -m ml_pipelines.jobs.tmvm_demo [--workdir=workdirs/tmvm_demo] [--steps=500]
        [--variants=meanp,k4,k4_var] [--cpu_devices=N]

Every caption of a test video names one of its objects (2 by default: `--objects=lo,hi`), so a
single video embedding has to match several unrelated captions at once (the correspondence
ambiguity TMVM targets). Defaults: 1,000 training and 100 test videos of 4 frames, 500 steps of
batch 32 at lr 5e-4 (1e-3 collapses the towers trained from scratch).
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


def config_for(variant: str, args):
  c = common.load_config("video", "tmvm", VARIANTS[variant][0])
  steps = args.steps
  c.total_steps, c.batch_size, c.eval_batch_size = steps, args.batch_size, 100
  c.log_every, c.eval_every, c.checkpoint_every = max(1, steps // 10), steps, steps
  c.optimizer.warmup_steps = min(50, steps // 10)
  c.optimizer.learning_rate = args.lr
  lo, hi = (int(x) for x in args.objects.split(","))
  c.data.update(frames=args.frames, num_frames=args.frames, train_size=args.train_size,
                test_size=args.test_size, min_objects=lo, max_objects=hi)
  c.model.vision.update(depth=args.depth)
  return c


def ceiling(c) -> dict[str, float]:
  """The best a perfect reader of the captions can expect. A caption names one object (colour,
  shape, motion), and every test video holding that object is an equally right answer, so with
  ties broken at random text-to-video R@k is at most the mean over captions of min(k, n) / n (n:
  the test videos with that caption). Video to text: the m captions naming one of the video's
  objects tie, a of them its own, so R@k <= 1 - C(m - a, k) / C(m, k) on average."""
  from ml_pipelines import data
  queries = data.get(c.data.name)(c.data, c.data.eval_split + "_text").source
  caps: dict[int, list[tuple]] = {}  # video -> its captions (as token ids)
  for i in range(len(queries)):
    q = queries[i]
    caps.setdefault(int(q["video_index"]), []).append(tuple(np.asarray(q["text"]).tolist()))
  caps = list(caps.values())
  count: dict[tuple, int] = {}
  for cs in caps:
    for t in cs:
      count[t] = count.get(t, 0) + 1

  def v2t(cs, k):
    m, a = sum(count[t] for t in cs), len(cs)
    return 1 - np.prod([(m - a - j) / (m - j) for j in range(min(k, m - a + 1))])
  out = {}
  for k in (1, 5):
    out[f"t2v_R@{k}"] = 100 * float(np.mean([min(k, count[t]) / count[t]
                                             for cs in caps for t in cs]))
    out[f"v2t_R@{k}"] = 100 * float(np.mean([v2t(cs, k) for cs in caps]))
  return out


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
  p.add_argument("--steps", type=int, default=500)
  p.add_argument("--train_size", type=int, default=1000)
  p.add_argument("--test_size", type=int, default=100)
  p.add_argument("--objects", default="2,2", help="fewest,most objects per video")
  p.add_argument("--frames", type=int, default=4)
  p.add_argument("--depth", type=int, default=2, help="of the image tower")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--lr", type=float, default=5e-4)
  args = p.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  rows, results, t0 = [], {}, time.time()
  for v in args.variants.split(","):
    c = config_for(v, args)
    out = train.train_and_evaluate(c, os.path.join(args.workdir, v))
    results[v] = {k: float(x) for k, x in out.items() if k != "state"}
    rows.append([VARIANTS[v][1]] + [f"{out['eval/' + m]:.1f}" for m in (
        "t2v_R@1", "t2v_R@5", "v2t_R@1", "v2t_R@5", "t2v_MdR")])
    if v == "k4_var":
      draw_attention(c, out["state"], os.path.join(args.workdir, "tmvm_attention.png"))
  best = ceiling(c)
  rows.append(["ceiling (every video with the named object ties)"]
              + [f"{best[m]:.1f}" for m in ("t2v_R@1", "t2v_R@5", "v2t_R@1", "v2t_R@5")] + [""])
  table = common.markdown_table(["variant", "t2v R@1", "t2v R@5", "v2t R@1", "v2t R@5",
                                 "t2v MdR"], rows)
  print(f"\n{table}\n({time.time() - t0:.0f} s)")
  with open(os.path.join(args.workdir, "tmvm_demo.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.workdir, "tmvm_demo.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

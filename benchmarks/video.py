"""Training throughput (clips/s) and compiled memory of TMVM and STVGFormer, ours (JAX, bf16
towers, f32 parameters), with CLIP4Clip's official meanP training step beside TMVM when a GPU and
the official code are present.

    python benchmarks/video.py                  # GPU: batch 32, TMVM 12 frames, STVG 100 frames
    python benchmarks/video.py --cpu            # reduced: batch 2, TMVM 4 frames, STVG 8 frames

Both models are the real-data configs' (`configs/video/tmvm.py:msrvtt`,
`configs/video/stvgformer.py:hcstvg`) with their training losses (the tasks' `loss`, as the trainer
runs it) and an AdamW step:
- TMVM: CLIP ViT-B/32's image tower (`clip_vit_b32_visual`, models/clip.py) on every 224 px frame,
  CLIP's text tower on 32 tokens, K = 4 prototypes; 12 frames (CLIP4Clip's MSR-VTT recipe).
- STVGFormer: the same CLIP towers, 6 static + 6 dynamic encoder layers and 6 decoder layers of
  width 256, on the HC-STVG clip at TubeDETR's 5 fps (20 s = 100 frames), 224 px.
`--cpu` keeps these towers and widths and cuts the batch and the frames so a 2-core machine
finishes in minutes. Random weights and inputs: speed does not depend on them.
Official: CLIP4Clip (ArrowLuo/CLIP4Clip, its directory given by `--clip4clip_dir`; see
tests/fixtures/video/make_fixtures.py) `modules/module_clip.CLIP` ViT-B/32 at random init, meanP
similarity and CrossEn both ways, AdamW, bf16 autocast, CUDA only. TubeDETR's official step needs
its MDETR ResNet-101 backbone and RoBERTa weights and is not run (noted in the output).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import models  # noqa: E402
from ml_pipelines import tasks  # noqa: E402

CONFIGS = {"tmvm": ("tmvm", "msrvtt"), "stvg": ("stvgformer", "hcstvg")}


def real_config(which: str, frames: int):
  """The real-data config of `which` with bf16 towers and room for `frames` frames."""
  module, arg = CONFIGS[which]
  c = importlib.import_module(f"configs.video.{module}").get_config(arg)
  c.model.vision.dtype = c.model.text.dtype = "bfloat16"
  if which == "stvg":
    c.model.max_frames = max(c.model.max_frames, frames)
    c.model.dropout = 0.0
  return c


def _step(model, loss_fn):
  tx = nnx.Optimizer(model, optax.adamw(1e-4, weight_decay=0.2), wrt=nnx.Param)

  @nnx.jit
  def step(model, tx, batch):
    loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
    tx.update(model, grads)
    return loss
  return tx, step


def _time(step, model, tx, batch, steps):
  jax.block_until_ready(step(model, tx, batch))
  jax.block_until_ready(step(model, tx, batch))
  t = time.perf_counter()
  for _ in range(steps):
    loss = step(model, tx, batch)
  jax.block_until_ready(loss)
  return (time.perf_counter() - t) / steps


def _memory(step, model, tx, batch):
  try:
    stats = step.lower(model, tx, batch).compile().memory_analysis()
    return (stats.temp_size_in_bytes + stats.argument_size_in_bytes) / 2 ** 30
  except Exception:  # not every backend reports it
    return float("nan")


def _batch(args, frames, size=224, words=32):
  rng = np.random.default_rng(0)
  shape = (args.batch, frames, size, size, 3)
  return {"video": jnp.asarray(rng.integers(0, 255, shape), jnp.uint8),
          "frame_mask": jnp.ones((args.batch, frames), bool),
          "text": jnp.asarray(rng.integers(1, 49000, (args.batch, words)), jnp.int32),
          "text_mask": jnp.ones((args.batch, words), bool)}


def bench(which, args):
  """(clips/s, compiled GiB) of one training step of `which` (`tmvm` or `stvg`)."""
  frames = args.tmvm_frames if which == "tmvm" else args.stvg_frames
  c = real_config(which, frames)
  model = models.build(c.model)
  task = tasks.get(c.task.name)(c)
  batch = _batch(args, frames)
  if which == "stvg":
    batch.update(boxes=jnp.full((args.batch, frames, 4), 0.3),
                 box_mask=jnp.ones((args.batch, frames), bool),
                 start=jnp.zeros(args.batch, jnp.int32),
                 end=jnp.full(args.batch, frames - 1, jnp.int32))

  def loss_fn(model, b):
    return task.loss(model, b, jax.random.key(0), None, 0)[0]
  tx, step = _step(model, loss_fn)
  dt = _time(step, model, tx, batch, args.steps)
  return args.batch / dt, _memory(step, model, tx, batch)


def bench_clip4clip(args):
  """CLIP4Clip's meanP training step (official code) on CUDA, or the reason it was skipped."""
  try:
    import torch
  except ImportError:
    return "torch missing"
  if not torch.cuda.is_available():
    return "no CUDA device"
  repo = args.clip4clip_dir
  if not repo or not os.path.isdir(repo):
    return f"official code not at {repo}"
  sys.path.insert(0, repo)
  from modules.module_clip import CLIP
  from modules.until_module import CrossEn
  clip = CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12).cuda().train()
  opt = torch.optim.AdamW(clip.parameters(), lr=1e-4, weight_decay=0.2)
  ce = CrossEn()
  frames = torch.randn(args.batch * args.tmvm_frames, 3, 224, 224, device="cuda")
  ids = torch.randint(1, 49407, (args.batch, 77), device="cuda")

  def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
      v = clip.encode_image(frames).float().view(args.batch, args.tmvm_frames, -1)
      v = v / v.norm(dim=-1, keepdim=True)
      v = v.mean(1)
      v = v / v.norm(dim=-1, keepdim=True)
      t = clip.encode_text(ids).float()
      t = t / t.norm(dim=-1, keepdim=True)
      sim = clip.logit_scale.exp() * t @ v.T
      loss = (ce(sim) + ce(sim.T)) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
  for _ in range(2):
    step()
  torch.cuda.synchronize()
  t0 = time.perf_counter()
  for _ in range(args.steps):
    step()
  torch.cuda.synchronize()
  dt = (time.perf_counter() - t0) / args.steps
  return f"{args.batch / dt:.1f} clips/s, {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cpu", action="store_true",
                 help="reduced run: batch 2, TMVM 4 frames, STVG 8 frames, 2 timed steps")
  p.add_argument("--batch", type=int)
  p.add_argument("--tmvm_frames", type=int)
  p.add_argument("--stvg_frames", type=int)
  p.add_argument("--steps", type=int)
  p.add_argument("--clip4clip_dir", default=os.environ.get("CLIP4CLIP_DIR", ""))
  args = p.parse_args(argv)
  preset = dict(batch=2, tmvm_frames=4, stvg_frames=8, steps=2) if args.cpu else dict(
      batch=32, tmvm_frames=12, stvg_frames=100, steps=10)
  for k, v in preset.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  rows = [("TMVM (ours, JAX)", *bench("tmvm", args)),
          ("STVGFormer (ours, JAX)", *bench("stvg", args))]
  print(f"device: {jax.devices()[0].device_kind}; batch {args.batch}; TMVM {args.tmvm_frames} "
        f"frames, STVG {args.stvg_frames} frames; 224 px, CLIP ViT-B/32 towers in bf16")
  print("| model | train clips/s | compiled memory (GiB) |\n|---|---:|---:|")
  for name, speed, mem in rows:
    print(f"| {name} | {speed:.2f} | {mem:.3f} |")
  print(f"| CLIP4Clip meanP (official, PyTorch) | {bench_clip4clip(args)} | |")
  print("| TubeDETR (official) | not run: needs its MDETR ResNet-101 and RoBERTa weights | |")


if __name__ == "__main__":
  main()

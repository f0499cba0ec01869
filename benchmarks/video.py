"""Training throughput (clips/s) and compiled memory of TMVM and STVGFormer, ours (JAX, bf16
towers, f32 parameters), with CLIP4Clip's official meanP training step beside TMVM when a GPU and
the official code are present.

    python benchmarks/video.py --batch=32 --tmvm_frames=12 --stvg_frames=100 --steps=10
    # CPU smoke run (reduced sizes):  --tiny --batch=2 --tmvm_frames=4 --stvg_frames=8 --steps=2

TMVM: 12 frames of 224 px through a ViT-B/32-geometry image tower (patch 32, 768 wide, 12 blocks)
and a 12-layer, 512-wide text tower of 32 tokens (CLIP ViT-B/32's text geometry), K = 4. Until
models/clip.py lands these are `vit_b16` (patch 32) and `bert_base` blocks of the same sizes, so
FLOPs match CLIP ViT-B/32; the CLIP towers drop in through the model's `vision` / `text` blocks.
STVGFormer: the HC-STVG clip at TubeDETR's 5 fps (20 s = 100 frames), 224 px, the same towers,
6 + 6 encoder and 6 decoder layers of width 256.
Official: CLIP4Clip (`third_party/CLIP4Clip`, ArrowLuo/CLIP4Clip; see
tests/fixtures/video/make_fixtures.py) `modules/module_clip.CLIP` ViT-B/32 at random init, meanP
similarity and CrossEn both ways, AdamW, bf16 autocast, CUDA only. TubeDETR's official step needs
its MDETR ResNet-101 backbone weights and is not run here (noted in the output).
"""
from __future__ import annotations

import argparse
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
from losses import video as vl  # noqa: E402


def towers(args):
  if args.tiny:
    return (dict(name="vit_b16", embed_dim=32, depth=1, num_heads=2, patch_size=16, img_size=32,
                 num_classes=None, drop_path=0.0, dtype="bfloat16"),
            dict(name="bert_base", vocab_size=100, hidden_size=32, num_layers=1, num_heads=2,
                 max_position=32, dtype="bfloat16"), 32)
  return (dict(name="vit_b16", embed_dim=768, depth=12, num_heads=12, patch_size=32,
               img_size=224, num_classes=None, drop_path=0.0, dtype="bfloat16"),
          dict(name="bert_base", vocab_size=49408, hidden_size=512, num_layers=12, num_heads=8,
               max_position=77, dtype="bfloat16"), 224)


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


def _batch(args, frames, size, words=32):
  rng = np.random.default_rng(0)
  shape = (args.batch, frames, size, size, 3)
  return {"video": jnp.asarray(rng.integers(0, 255, shape), jnp.uint8),
          "frame_mask": jnp.ones((args.batch, frames), bool),
          "text": jnp.asarray(rng.integers(1, 99, (args.batch, words)), jnp.int32),
          "text_mask": jnp.ones((args.batch, words), bool)}


def bench_tmvm(args):
  vision, text, size = towers(args)
  model = models.build(dict(name="tmvm", vision=vision, text=text, embed_dim=512,
                            num_prototypes=4))
  batch = _batch(args, args.tmvm_frames, size)

  def loss_fn(model, b):
    sim, attn = model(b["video"], b["frame_mask"], b["text"], b["text_mask"])
    return vl.symmetric_cross_entropy(sim) + vl.prototype_variance(attn)
  tx, step = _step(model, loss_fn)
  dt = _time(step, model, tx, batch, args.steps)
  return args.batch / dt, _memory(step, model, tx, batch)


def bench_stvg(args):
  vision, text, size = towers(args)
  layers = 1 if args.tiny else 6
  model = models.build(dict(name="stvgformer", vision=vision, text=text, dim=256, heads=8,
                            static_layers=layers, dynamic_layers=layers, decoder_layers=layers,
                            max_frames=max(200, args.stvg_frames), dropout=0.0))
  batch = _batch(args, args.stvg_frames, size)
  t = args.stvg_frames
  batch.update(boxes=jnp.full((args.batch, t, 4), 0.3), box_mask=jnp.ones((args.batch, t), bool),
               start=jnp.zeros(args.batch, jnp.int32), end=jnp.full(args.batch, t - 1, jnp.int32))

  def loss_fn(model, b):
    out = model(b["video"], b["frame_mask"], b["text"], b["text_mask"])
    boxes, sted = out["boxes"][-1], out["sted"][-1]
    return (5 * vl.box_l1(boxes, b["boxes"], b["box_mask"])
            + 2 * vl.box_giou(boxes, b["boxes"], b["box_mask"])
            + 10 * vl.sted_kl(sted, b["start"], b["end"], b["frame_mask"]))
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
  repo = os.path.join(ROOT, "third_party", "CLIP4Clip")
  if not os.path.isdir(repo):
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
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--tmvm_frames", type=int, default=12)
  p.add_argument("--stvg_frames", type=int, default=100)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--tiny", action="store_true", help="reduced towers for a CPU run")
  args = p.parse_args(argv)
  rows = [("TMVM (ours, JAX)", *bench_tmvm(args)), ("STVGFormer (ours, JAX)", *bench_stvg(args))]
  print(f"device: {jax.devices()[0].device_kind}; batch {args.batch}; TMVM {args.tmvm_frames} "
        f"frames, STVG {args.stvg_frames} frames{' (tiny towers)' if args.tiny else ''}")
  print("| model | train clips/s | compiled memory (GiB) |\n|---|---:|---:|")
  for name, speed, mem in rows:
    print(f"| {name} | {speed:.2f} | {mem:.3f} |")
  print(f"| CLIP4Clip meanP (official, PyTorch) | {bench_clip4clip(args)} | |")
  print("| TubeDETR (official) | not run: needs its MDETR ResNet-101 weights | |")


if __name__ == "__main__":
  main()

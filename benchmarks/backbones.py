"""Training and inference throughput (images/s) of the backbones, ours (JAX, bf16 compute, f32
params) against the official PyTorch code (eager and torch.compile, bf16 autocast) in one command.

    python benchmarks/backbones.py --models=dilateformer_tiny,dilateformer_base,pslt \
        --image_size=224 --train_batch=128 --infer_batch=256 --steps=20
    # CPU smoke run:  --image_size=64 --train_batch=8 --infer_batch=8 --steps=3 --tiny

Model FLOP utilisation = (3 x forward FLOPs for training, 1 x for inference) x images/s / peak,
with forward FLOPs = 2 x MACs from ml_pipelines.jobs.flops and --peak_tflops (H100 SXM bf16 dense: 989).
The official code is looked up in third_party/{dilateformer,pslt}/ (git-ignored; see
tests/fixtures/backbones/make_fixtures.py) and skipped with a note when absent.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402
from ml_pipelines import flops  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"dilateformer": dict(embed_dim=12, depths=(1, 1, 2, 1), num_heads=(3, 3, 6, 6)),
        "pslt": dict(embed_dim=12, depths=(2, 1), conv_depths=(1, 1))}
OFFICIAL = {"dilateformer_tiny": ("dilateformer", "dilateformer_tiny"),
            "dilateformer_small": ("dilateformer", "dilateformer_small"),
            "dilateformer_base": ("dilateformer", "dilateformer_base"),
            "pslt_tiny": ("pslt", "PSLT_tiny"), "pslt": ("pslt", "PSLT"),
            "pslt_large": ("pslt", "PSLT_large")}


def _kw(name, args):
  kw = dict(dtype="bfloat16", num_classes=1000)
  if name.startswith("pslt"):
    kw["img_size"] = args.image_size
  if args.tiny:
    kw.update(TINY.get(name.split("_")[0], {}))
  return kw


def _timeit(fn, steps):
  fn()  # compile / warm up
  fn()
  t = time.perf_counter()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - t) / steps


def bench_ours(name, args):
  model = models.build(name, **_kw(name, args))
  tx = nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=0.05), wrt=nnx.Param)
  xb = jnp.asarray(np.random.default_rng(0).normal(size=(args.train_batch, args.image_size,
                                                             args.image_size, 3)), jnp.float32)
  yb = jnp.zeros((args.train_batch,), jnp.int32)

  @nnx.jit
  def train_step(model, tx, x, y):
    def loss_fn(m):
      logits = m(x).astype(jnp.float32)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    tx.update(model, grads)
    return loss

  t_train = _timeit(lambda: train_step(model, tx, xb, yb).block_until_ready(), args.steps)
  model.eval()
  xi = jnp.ones((args.infer_batch, args.image_size, args.image_size, 3), jnp.float32)
  infer = nnx.jit(lambda m, x: m(x))
  t_inf = _timeit(lambda: infer(model, xi).block_until_ready(), args.steps)
  return args.train_batch / t_train, args.infer_batch / t_inf, model


def bench_official(name, args, compiled: bool):
  if name not in OFFICIAL:
    return None
  folder, fn = OFFICIAL[name]
  path = os.path.join(ROOT, "third_party", folder)
  if not os.path.isdir(path):
    return None
  sys.path.insert(0, os.path.join(ROOT, "tests/fixtures/backbones"))
  import torch
  import make_fixtures  # the timm/torchvision import shim
  sys.meta_path.insert(0, make_fixtures._Finder())
  sys.path.insert(0, path)
  mod = __import__(folder)
  if args.tiny:
    spec = dict(make_fixtures.SPECS[folder])
    spec.update({k: list(v) if isinstance(v, tuple) else v for k, v in TINY[folder].items()},
                img_size=args.image_size,
                num_classes=1000)
    if folder == "dilateformer":
      net = mod.Dilateformer(**spec)
    else:
      net = mod.PSLTransformer(patch_norm=False, pointwise=True, multi_shift=True, has_se=True,
                               input_v=True, BasicLayer=mod.BasicLayer_multi_branch,
                               PatchEmbed=mod.PatchEmbed_stem_3conv, Mlp=mod.Mlp_Light, **spec)
  else:
    net = getattr(mod, fn)()
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  net = net.to(dev)
  run = torch.compile(net) if compiled else net
  opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
  x = torch.randn(args.train_batch, 3, args.image_size, args.image_size, device=dev)
  y = torch.zeros(args.train_batch, dtype=torch.long, device=dev)
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

  def train_step():
    with torch.autocast(dev, dtype=torch.bfloat16):
      loss = torch.nn.functional.cross_entropy(run(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync()
  net.train()
  t_train = _timeit(train_step, args.steps)
  net.eval()
  xi = torch.randn(args.infer_batch, 3, args.image_size, args.image_size, device=dev)

  def infer():
    with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16):
      run(xi)
    sync()
  t_inf = _timeit(infer, args.steps)
  return args.train_batch / t_train, args.infer_batch / t_inf


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--models", default="dilateformer_tiny,dilateformer_base,pslt")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--train_batch", type=int, default=128)
  p.add_argument("--infer_batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--peak_tflops", type=float, default=989.0)
  p.add_argument("--tiny", action="store_true", help="reduced widths/depths (CPU smoke runs)")
  p.add_argument("--no_official", action="store_true")
  args = p.parse_args()
  print("command: python " + " ".join(sys.argv))
  print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), image "
        f"{args.image_size}, train batch {args.train_batch}, inference batch {args.infer_batch}")
  rows = ["| model | impl | train img/s | infer img/s | train MFU | infer MFU |",
          "| --- | --- | --- | --- | --- | --- |"]
  for name in args.models.split(","):
    tr, inf, model = bench_ours(name, args)
    fl = 2 * flops.model_macs(model, args.image_size)
    mfu = lambda ips, k: f"{100 * k * fl * ips / (args.peak_tflops * 1e12):.2f}%"
    rows.append(f"| {name} | ours (JAX bf16) | {tr:.1f} | {inf:.1f} | {mfu(tr, 3)} | {mfu(inf, 1)} |")
    print(rows[-1], flush=True)
    if args.no_official:
      continue
    for compiled in (False, True):
      try:
        res = bench_official(name, args, compiled)
      except Exception as e:  # noqa: BLE001 - report, keep benchmarking
        res = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:80]}"
      impl = "official torch.compile" if compiled else "official eager"
      if res is None:
        rows.append(f"| {name} | {impl} | (official code not in third_party/) | | | |")
      elif isinstance(res, str):
        rows.append(f"| {name} | {impl} | {res} | | | |")
      else:
        rows.append(f"| {name} | {impl} | {res[0]:.1f} | {res[1]:.1f} | {mfu(res[0], 3)} | "
                    f"{mfu(res[1], 1)} |")
      print(rows[-1], flush=True)
  print("\n".join(rows))


if __name__ == "__main__":
  main()

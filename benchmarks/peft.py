"""Memory and step time of full fine-tuning, LoRA-8 and SNELL-8 on ViT-B/16 (224 x 224), ours
(JAX) and, when a GPU and the official code are present, the official SNELL code (PyTorch), in one
command. Issue target: SNELL's memory within 10% of our LoRA's and below the official SNELL's,
training step >= 1.5x the official throughput (the paper: 1546 MB LoRA-8 vs 1673 MB SNELL-8 at
batch 8).

    python benchmarks/peft.py --batches=8,32                      # GPU: ours + official
    python benchmarks/peft.py --batches=8,32 --tiny --image_size=64 --steps=3   # CPU reduced size

Every (implementation, method, batch) runs in its own process, so peak memory is its own:
- ours: one jitted AdamW step on the trainable part only (frozen weights closed over, as the
  trainer does), fp32; memory = XLA's compiled memory analysis (arguments + outputs + temporaries
  - aliased) and, on a GPU, the device's peak bytes in use after the timed steps.
- official (github.com/ssfgunner/SNELL, `model/vision_transformer_timm.py`, needs timm): the
  `VisionTransformerSNELL` with `BlockSNELLParallel`, `freeze_stages()`, torch AdamW over the
  parameters that require grad; memory = torch.cuda.max_memory_allocated. Looked up in
  --official_dir (default /work/third_party/snell; get it with
  `git show e9d5185:model/vision_transformer_timm.py > DIR/vision_transformer_timm.py`).
`--memory_only` lowers and compiles ours without running (the full-size CPU memory table).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
METHODS = ("full", "lora8", "snell8")
ADAPTER = {"lora8": dict(kind="lora", rank=8), "snell8": dict(kind="kernel", rank=8, sparsity=0.5)}
TINY = dict(embed_dim=192, depth=4, num_heads=3)
NUM_CLASSES = 100


def ours(method: str, batch: int, args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx

  import models
  from configs.peft import snell
  from ml_pipelines.trainer import partition
  kw = dict(num_classes=NUM_CLASSES, img_size=args.image_size, drop_path=0.1, dtype="float32")
  if args.tiny:
    kw.update(TINY)
  if method in ADAPTER:
    kw["adapter"] = ADAPTER[method]
  model = models.build("vit_b16", **kw)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  mask = partition.trainable_mask(params, None if method == "full" else snell.TRAINABLE)
  trainable, frozen = partition.split(params, mask)
  tx = optax.adamw(1e-3, weight_decay=0.01)
  opt = tx.init(trainable)

  def step(trainable, opt, rest, frozen, x, y):
    def loss_fn(trainable):
      m = nnx.merge(graphdef, partition.merge(trainable, frozen), rest)
      logits = m(x)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param)))
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt = tx.update(grads, opt, trainable)
    return optax.apply_updates(trainable, updates), opt, rest, loss

  x = jnp.asarray(np.random.default_rng(0).normal(
      size=(batch, args.image_size, args.image_size, 3)), jnp.float32)
  y = jnp.arange(batch, dtype=jnp.int32) % NUM_CLASSES
  jitted = jax.jit(step, donate_argnums=(0, 1, 2))
  compiled = jitted.lower(trainable, opt, rest, frozen, x, y).compile()
  m = compiled.memory_analysis()
  out = {"impl": "ours", "method": method, "batch": batch,
         "trainable": partition.count(trainable),
         "opt_state_mb": sum(v.nbytes for v in jax.tree_util.tree_leaves(opt)) / 2**20,
         "compiled_mb": (m.argument_size_in_bytes + m.output_size_in_bytes
                         + m.temp_size_in_bytes - m.alias_size_in_bytes) / 2**20,
         "temp_mb": m.temp_size_in_bytes / 2**20}
  if args.memory_only:
    return out
  state = (trainable, opt, rest)
  for _ in range(2):  # warm up
    *state, loss = compiled(*state, frozen, x, y)
  loss.block_until_ready()
  t = time.perf_counter()
  for _ in range(args.steps):
    *state, loss = compiled(*state, frozen, x, y)
  loss.block_until_ready()
  out["step_ms"] = 1e3 * (time.perf_counter() - t) / args.steps
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["peak_mb"] = stats["peak_bytes_in_use"] / 2**20
  return out


def official(method: str, batch: int, args) -> dict:
  import torch
  sys.path.insert(0, args.official_dir)
  import vision_transformer_timm as V
  kw = dict(img_size=args.image_size, patch_size=16, num_classes=NUM_CLASSES, embed_dim=768,
            depth=12, num_heads=12, drop_path_rate=0.1, no_drop_path=False, no_drop_out=False)
  if args.tiny:
    kw.update(TINY)
  if method == "full":
    model = V.VisionTransformer(**{k: v for k, v in kw.items() if not k.startswith("no_drop")})
  else:
    model = V.VisionTransformerSNELL(block="BlockSNELLParallel", low_rank_dim=8,
                                     tuning_model="lora" if method == "lora8" else "snell",
                                     init_thres=0.5 if method == "snell8" else 0.0, **kw)
    model.freeze_stages()
  dev = torch.device("cuda")
  model = model.to(dev).train()
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
  x = torch.randn(batch, 3, args.image_size, args.image_size, device=dev)
  y = torch.arange(batch, device=dev) % NUM_CLASSES

  def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
  for _ in range(2):
    step()
  torch.cuda.synchronize()
  torch.cuda.reset_peak_memory_stats()
  t = time.perf_counter()
  for _ in range(args.steps):
    step()
  torch.cuda.synchronize()
  return {"impl": "official", "method": method, "batch": batch,
          "trainable": sum(p.numel() for p in params),
          "step_ms": 1e3 * (time.perf_counter() - t) / args.steps,
          "peak_mb": torch.cuda.max_memory_allocated() / 2**20}


def _gpu() -> bool:
  try:
    import jax
    return jax.devices()[0].platform == "gpu"
  except Exception:  # noqa: BLE001
    return False


def _run_one(impl, method, batch, argv) -> dict | None:
  cmd = [sys.executable, os.path.abspath(__file__), *argv, f"--one={impl},{method},{batch}"]
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    print(f"{impl} {method} batch {batch} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None
  return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
  from ml_pipelines.jobs.common import markdown_table
  f = lambda r, k, fmt: format(r[k], fmt) if k in r else "-"
  return markdown_table(
      ["impl", "method", "batch", "trainable params", "optimizer state MB", "compiled MB (XLA)",
       "peak MB (device)", "step ms"],
      [[r["impl"], r["method"], r["batch"], f"{r['trainable']:,}", f(r, "opt_state_mb", ".1f"),
        f(r, "compiled_mb", ".1f"), f(r, "peak_mb", ".1f"), f(r, "step_ms", ".1f")]
       for r in rows])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batches", default="8,32")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--tiny", action="store_true", help=f"reduced model {TINY} (CPU timing)")
  p.add_argument("--memory_only", action="store_true", help="compile ours only, no timing")
  p.add_argument("--official_dir", default="/work/third_party/snell")
  p.add_argument("--one", default="", help=argparse.SUPPRESS)
  argv = sys.argv[1:] if argv is None else argv
  a = p.parse_args(argv)
  if a.one:
    impl, method, batch = a.one.split(",")
    print(json.dumps((ours if impl == "ours" else official)(method, int(batch), a)), flush=True)
    return
  impls = ["ours"]
  if not a.memory_only and _gpu() and os.path.exists(
      os.path.join(a.official_dir, "vision_transformer_timm.py")):
    impls.append("official")
  rows = []
  for batch in map(int, a.batches.split(",")):
    for method in a.methods.split(","):
      for impl in impls:
        row = _run_one(impl, method, batch, argv)
        if row:
          rows.append(row)
          print(json.dumps(row), flush=True)
  print(table(rows))


if __name__ == "__main__":
  main()

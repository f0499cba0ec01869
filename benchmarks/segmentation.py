"""Training throughput (images/s) and compiled memory of the segmentation train step with
cross-entropy alone, CE + AUC loss and CE + AUC + T-Memory Bank (AUCSeg), ours, and where a GPU and
the official code are present the official AUC loss and memory bank timed in PyTorch beside it.

    python benchmarks/segmentation.py --crop=512 --classes=150 --batch=4 --backbone=resnet50 \
        --tail=ade20k --p_sample=0.05 --p_resize=0.4 --steps=20 [--official_dir=third_party/AUCSeg]
    # CPU, reduced size:
    python benchmarks/segmentation.py --crop=64 --classes=11 --batch=4 --backbone=resnet18 \
        --width=16 --tail=8,9,10 --p_sample=1 --p_resize=1 --steps=3

Target (issue 17): the AUC loss and the bank cost at most 10% over cross-entropy alone.
The official side (`--official_dir`, a checkout of boyuh/AUCSeg; needs torch with CUDA and OpenCV)
times `SquareAUCLoss` + `CrossEntropyLoss` on the same logits size and `TMemoryBank.__call__` per
image (it runs in the data loader on the CPU there); the full mmseg SegNeXt step needs mmcv-full and
is not run by this script.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ml_pipelines import train  # noqa: E402
from ml_pipelines.data import segmentation_bank as sb  # noqa: E402
from ml_pipelines.jobs import common  # noqa: E402


def config_for(args, variant: str):
  c = common.load_config("segmentation", "aucseg", f"digits,{variant}")
  c.batch_size = args.batch
  c.data.size, c.data.num_train, c.data.num_test = args.crop, args.batch, args.batch
  c.model.num_classes = args.classes
  c.model.backbone = dict(name=args.backbone, **({"width": args.width} if args.width else {}))
  c.model.channels = args.channels
  if variant == "aucseg":
    tail = sb.tail_classes(args.tail if not args.tail[0].isdigit()
                           else [int(t) for t in args.tail.split(",")])
    c.task.bank = dict(tail=list(tail), memory_size=5, p_sample=args.p_sample,
                       p_resize=args.p_resize)
  return c


def time_ours(args, variant: str) -> tuple[float, float]:
  """(images/s, compiled temp memory in MiB) of one train step."""
  c = config_for(args, variant)
  run = train.Run(c, tempfile.mkdtemp())
  compiled = run.lower_train_step().compile()
  mem = compiled.memory_analysis()
  temp_mib = (getattr(mem, "temp_size_in_bytes", 0) or 0) / 2 ** 20
  state = run.initial_state(jax.tree_util.tree_map(
      lambda x, s: jnp.zeros(x.shape, x.dtype, device=s), run.variable_shapes,
      run.variable_shardings))
  state = run.enter_stage(state, 0)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, args.classes, (args.batch, args.crop, args.crop)).astype(np.int32)
  batch = {"image": rng.normal(size=(args.batch, args.crop, args.crop, 3)).astype(np.float32),
           "label": labels, "index": np.arange(args.batch, dtype=np.int32)}
  batch = jax.device_put(batch, run.batch_sharding)
  state, _ = compiled(state, batch, run.env.constants)  # warm-up
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, _ = compiled(state, batch, run.env.constants)
  jax.block_until_ready(state)
  return args.batch * args.steps / (time.perf_counter() - start), temp_mib


def time_official(args) -> dict[str, float] | None:
  """Per-step seconds of the official AUC + CE loss (forward + backward) and bank, or None."""
  if not args.official_dir:
    return None
  import torch
  if not torch.cuda.is_available():
    print("official side skipped: no CUDA device")
    return None
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                  "aucseg"))
  from make_fixtures import _load  # the official files with stand-in registries
  auc = _load(args.official_dir, "mmseg/models/losses/auc_loss.py", "mmseg.models.losses")
  bank = _load(args.official_dir, "mmseg/datasets/pipelines/t_memory_bank.py",
               "mmseg.datasets.pipelines")
  dev = torch.device("cuda")
  logits = torch.randn(args.batch, args.classes, args.crop, args.crop, device=dev,
                       requires_grad=True)
  labels = torch.randint(0, args.classes, (args.batch, args.crop, args.crop), device=dev)
  loss_fn = auc.SquareAUCLoss(num_classes=args.classes)
  ce = torch.nn.CrossEntropyLoss(ignore_index=255)

  def step():
    loss = loss_fn(logits, labels) + ce(logits, labels)
    loss.sum().backward()
  step()
  torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  torch.cuda.synchronize()
  out = {"official AUC + CE loss (s/step)": (time.perf_counter() - start) / args.steps}
  tail = sb.tail_classes(args.tail if not args.tail[0].isdigit()
                         else [int(t) for t in args.tail.split(",")])
  tm = bank.TMemoryBank(args.classes, list(tail), 5, args.p_sample, args.p_resize)

  class _D:
    def __init__(self, d):
      self.data = d
  start = time.perf_counter()
  for i in range(args.steps * args.batch):
    lab = torch.from_numpy(np.random.default_rng(i).integers(
        0, args.classes, (1, args.crop, args.crop)))
    tm({"img": _D(torch.randn(3, args.crop, args.crop)), "gt_semantic_seg": _D(lab)})
  out["official bank (s/step, CPU)"] = (time.perf_counter() - start) / args.steps
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--crop", type=int, default=512)
  p.add_argument("--classes", type=int, default=150)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--backbone", default="resnet50")
  p.add_argument("--width", type=int, default=0)
  p.add_argument("--channels", type=int, default=256)
  p.add_argument("--tail", default="ade20k", help="dataset name or comma-separated ids")
  p.add_argument("--p_sample", type=float, default=0.05)
  p.add_argument("--p_resize", type=float, default=0.4)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--official_dir", default="")
  args = p.parse_args(argv)
  rows, base = [], None
  for variant in ("ce", "auc", "aucseg"):
    ips, mib = time_ours(args, variant)
    base = base or ips
    rows.append([variant, f"{ips:.2f}", f"{100 * (base / ips - 1):+.1f}%", f"{mib:.0f}"])
  print(f"\nSegmentation train step, {args.backbone}, crop {args.crop}, batch {args.batch}, "
        f"{args.classes} classes, {jax.devices()[0].platform}:")
  print(common.markdown_table(["variant", "images/s", "time vs CE", "temp memory (MiB)"], rows))
  official = time_official(args)
  if official:
    print(common.markdown_table(["official (PyTorch)", "value"],
                                [[k, f"{v:.4f}"] for k, v in official.items()]))


if __name__ == "__main__":
  main()

"""Overhead of the multimodal-imbalance optax transforms on a real two-encoder parameter tree.

Two ResNet-18 encoders (audio 1-channel stem, visual 3-channel; ~22.4M parameters), a concat fusion
layer and MIE's per-modality heads. Each row times one jitted `tx.update` of
`chain(transform, sgd(momentum))` against `sgd(momentum)` alone, with a batch of per-modality logits
and features. `grad_fn` is the identity here, so SAM/MIE rows measure the transform only; in training
their second forward/backward pass (the floor: ~2x the vanilla step) dominates. The whole-step
benchmark of the issue (models + loop vs the official PyTorch code) belongs to the demo/model side.

  python benchmarks/multimodal_transforms.py [--repeats 20] [--batch 64]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
import optim


def param_tree(classes: int = 6):
  enc = {}
  for m, cin in (("audio", 1), ("visual", 3)):
    net = models.build("resnet18", in_channels=cin, num_classes=None, rngs=nnx.Rngs(0))
    enc[f"{m}_encoder"] = nnx.to_pure_dict(nnx.state(net, nnx.Param))
  r = np.random.default_rng(0)
  f = lambda *s: jnp.asarray(r.normal(size=s) * 0.01, jnp.float32)
  for m in ("audio", "visual"):
    enc[f"{m}_head"] = {"fc1": {"kernel": f(512, 256)}, "fc2": {"kernel": f(256, 64)},
                        "fc3": {"kernel": f(64, classes)}}
  enc["fusion"] = {"fc_out": {"kernel": f(1024, classes), "bias": f(classes)}}
  return enc


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--repeats", type=int, default=20)
  ap.add_argument("--batch", type=int, default=64)
  args = ap.parse_args()
  params = param_tree()
  grads = jax.tree_util.tree_map(lambda x: 0.01 * jnp.ones_like(x) + 1e-3 * x, params)
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  r = np.random.default_rng(1)
  b, c = args.batch, 6
  groups = {"audio": "^audio_", "visual": "^visual_"}
  extra = dict(
      modality_logits={m: jnp.asarray(r.normal(size=(b, c)), jnp.float32) for m in groups},
      labels=jnp.asarray(r.integers(0, c, size=b), jnp.int32),
      modality_features={m: jnp.asarray(r.normal(size=(b, 512)), jnp.float32) for m in groups},
      mie_modality=jnp.int32(1),  # the visual stage, its head kernels projected
      mie_projectors={f"visual_head/{k}/kernel": jnp.eye(d, dtype=jnp.float32)
                      for k, d in (("fc1", 512), ("fc2", 256), ("fc3", 64))},
      term_grads={m: grads for m in groups},
      grad_fn=lambda w: w, rng=jax.random.PRNGKey(0))
  rows = [("sgd (vanilla)", None, {}),
          ("ogm_ge", "ogm_ge", {"alpha": 0.8}),
          ("ogm", "ogm_ge", {"alpha": 0.8, "variant": "ogm"}),
          ("amss", "amss", {}),
          ("amss_plus", "amss_plus", {}),
          ("agm", "agm", {"alpha": 0.1}),
          ("mmpareto", "mmpareto", {}),
          ("sam (identity grad_fn)", "sam", {"rho": 0.05, "normalize": "group"}),
          ("mie (identity grad_fn)", "mie", {"rho": 1e-10}),
          ]
  print(f"backend={jax.default_backend()} devices={jax.device_count()} params={n_params / 1e6:.1f}M "
        f"batch={b}")
  print(f"| transform | update ms (median of {args.repeats}) | vs sgd |")
  print("|---|---:|---:|")
  base_ms = None
  for label, name, opts in rows:
    parts = [] if name is None else [optim.get(name)(param_groups=groups, **opts)]
    tx = optax.chain(*parts, optax.sgd(0.01, momentum=0.9))
    state = tx.init(params)
    upd = jax.jit(lambda g, s, p, st: tx.update(g, s, p, step=st, **extra))
    out = upd(grads, state, params, jnp.int32(15))
    jax.block_until_ready(out)
    times = []
    for i in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(upd(grads, state, params, jnp.int32(15)))
      times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    base_ms = base_ms or ms
    print(f"| {label} | {ms:.2f} | {ms / base_ms:.2f}x |")
  print("command: python benchmarks/multimodal_transforms.py "
        f"--repeats {args.repeats} --batch {args.batch}")


if __name__ == "__main__":
  main()

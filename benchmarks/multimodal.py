"""Train-step throughput of audio-visual methods at CREMA-D shapes (audio [B, 257, 188, 1], one
224 x 224 frame, two ResNet-18 encoders, concat fusion), fp32 and bf16 compute.

    python benchmarks/multimodal.py --batch=64 --steps=20                # on a GPU
    python benchmarks/multimodal.py --batch=2 --steps=3 --methods=vanilla,ogm_ge   # CPU smoke size

The step mirrors the trainer's (ml_pipelines/train.py): one forward, a VJP for the loss, the task's
tx_args, `tx.update(..., grad_fn=...)`, apply updates; jitted, params donated. Configs are
`configs/multimodal/<method>.py:cremad,concat`. Samples/s excludes the first (compiling) step.
The official PyTorch comparison runs only if the OGM-GE code is present under
third_party/OGM-GE_CVPR2022 (never downloaded here).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
import optim
from ml_pipelines import config as config_lib
from ml_pipelines import tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_step(config, dtype):
  task = tasks.get("multimodal")(config)
  kw = {k: v for k, v in config.model.items() if k != "name"}
  model = models.get(config.model.name, dtype=dtype, rngs=nnx.Rngs(0), **kw)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  tx = optim.build(config.optimizer, int(config.total_steps))
  opt_state = tx.init(params)

  def step_fn(params, rest, opt_state, batch, step):
    rng = jax.random.fold_in(jax.random.key(0), step)

    def loss_fn(p, r):
      m = nnx.merge(graphdef, p, r)
      loss, aux = task.loss(m, batch, rng, None, step)
      return loss, (aux, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param))))

    def outputs(p):
      loss, (aux, new_rest) = loss_fn(p, rest)
      return (loss, aux.get("grad_terms", {})), (aux, new_rest)

    (loss, terms), vjp, (aux, new_rest) = jax.vjp(outputs, params, has_aux=True)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, terms)
    (grads,) = vjp((jnp.ones_like(loss), zeros))
    extra = dict(aux.get("tx_args", {}))
    if terms:
      extra["term_grads"] = {n: vjp((jnp.zeros_like(loss), {**zeros, n: jnp.ones_like(t)}))[0]
                             for n, t in terms.items()}
    grad_fn = lambda p: jax.grad(lambda q: loss_fn(q, rest)[0])(p)
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn, step=step, rng=rng,
                                   **extra)
    return optax.apply_updates(params, updates), new_rest, opt_state, loss

  return jax.jit(step_fn, donate_argnums=(0, 1, 2)), params, rest, opt_state


def bench(method, batch, steps, dtype, width):
  c = config_lib.load(os.path.join(ROOT, f"configs/multimodal/{method}.py:cremad,concat"))
  c.model.width = width
  fn, params, rest, opt_state = make_step(c, dtype)
  r = np.random.default_rng(0)
  b = {"audio": jnp.asarray(r.standard_normal((batch, 257, 188, 1)), jnp.float32),
       "visual": jnp.asarray(r.standard_normal((batch, 1, 224, 224, 3)), jnp.float32),
       "label": jnp.asarray(r.integers(0, 6, batch), jnp.int32)}
  t = time.perf_counter()
  params, rest, opt_state, loss = fn(params, rest, opt_state, b, jnp.int32(0))
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for i in range(steps):
    params, rest, opt_state, loss = fn(params, rest, opt_state, b, jnp.int32(i + 1))
  jax.block_until_ready(loss)
  return batch * steps / (time.perf_counter() - t), compile_s


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--methods", default="vanilla,ogm_ge,amss,mie")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--width", type=int, default=64)
  a = p.parse_args()
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), batch {a.batch}, "
        f"{a.steps} timed steps, ResNet-18 width {a.width}")
  print("| method | dtype | samples/s | first step (compile) s |\n|---|---|---|---|")
  for method in a.methods.split(","):
    for dt in a.dtypes.split(","):
      sps, comp = bench(method, a.batch, a.steps, jnp.dtype(dt), a.width)
      print(f"| {method} | {dt} | {sps:.2f} | {comp:.1f} |", flush=True)
  if not os.path.isdir(os.path.join(ROOT, "third_party", "OGM-GE_CVPR2022")):
    print("official PyTorch comparison skipped: third_party/OGM-GE_CVPR2022 is not present")


if __name__ == "__main__":
  main()

"""Forms of the train step's finite check: compile time and compiled memory of the PSLT step on an
8-device fsdp mesh (the tiny PSLT of tests/test_backbones_train.py).

    JAX_PLATFORMS=cpu python benchmarks/finite_check.py [--forms=norm,concat,zero_sum]

Prints one row per form: CPU seconds to lower and to compile (process time, so other load on the
machine counts less than in wall time), and XLA's memory analysis of the compiled step. Run without
a persistent compilation cache (unset JAX_COMPILATION_CACHE_DIR) so every form really compiles.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402


def concat(tree):  # one reduction over a float32 copy of every leaf (the former check)
  leaves = [x.ravel().astype(jnp.float32) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.isfinite(jnp.concatenate(leaves)))


def zero_sum(tree):  # x * 0 is 0 for finite x, nan otherwise: one reduction per leaf
  return jnp.isfinite(sum(jnp.sum(x * 0, dtype=jnp.float32) for x in jax.tree_util.tree_leaves(tree)))


def norm(tree):  # the global 2-norm (what ml_pipelines.train.all_finite uses)
  return jnp.isfinite(optax.tree.norm(tree))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--forms", default="norm,concat,zero_sum")
  args = parser.parse_args()
  jax.config.update("jax_num_cpu_devices", 8)
  from ml_pipelines import train
  from test_backbones_train import small
  print(f"command: python benchmarks/finite_check.py --forms={args.forms}  "
        f"({jax.devices()[0].platform}, {len(jax.devices())} devices)")
  print("| form | lower (CPU s) | compile (CPU s) | temp MiB | arguments MiB |")
  print("|---|---:|---:|---:|---:|")
  for name in args.forms.split(","):
    train.all_finite = {"concat": concat, "zero_sum": zero_sum, "norm": norm}[name]
    run = train.Run(small("pslt", **{"mesh.data": 1, "mesh.fsdp": 8}), "/tmp/finite_check")
    t0 = time.process_time()
    lowered = run.lower_train_step()
    t1 = time.process_time()
    compiled = lowered.compile()
    t2 = time.process_time()
    m = compiled.memory_analysis()
    print(f"| {name} | {t1 - t0:.1f} | {t2 - t1:.1f} | {m.temp_size_in_bytes / 2**20:.2f} | "
          f"{m.argument_size_in_bytes / 2**20:.2f} |", flush=True)


if __name__ == "__main__":
  main()

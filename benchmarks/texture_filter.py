"""Pyramid texture filtering: JAX (jit, any backend) vs the plain NumPy reference.

Times a colour photograph-like image (scikit-image `astronaut`, resized) at the given side lengths:
JAX compile + first call, then the steady-state mean of `--repeats` calls (block_until_ready), and
the NumPy reference (tests/texture_reference.py, loop over window offsets) once, up to
`--reference_max_mp` megapixels. Reports the max |JAX - NumPy| where both ran.

    python benchmarks/texture_filter.py --sides 1024,2048 --repeats 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ml_pipelines import texture_filter as tf  # noqa: E402
from tests import texture_reference as ref  # noqa: E402


def image(side: int) -> np.ndarray:
  from skimage import data
  from skimage.transform import resize
  return resize(data.astronaut(), (side, side), anti_aliasing=True).astype(np.float32)


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--sides", default="1024,2048")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--sigma_s", type=float, default=5.0)
  p.add_argument("--sigma_r", type=float, default=0.05)
  p.add_argument("--levels", type=int, default=11)
  p.add_argument("--reference_max_mp", type=float, default=1.1)
  a = p.parse_args(argv)
  kw = dict(sigma_s=a.sigma_s, sigma_r=a.sigma_r, levels=a.levels)
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"sigma_s {a.sigma_s}, sigma_r {a.sigma_r}, levels {a.levels}")
  print("| size | MP | JAX compile+1st (s) | JAX steady (s) | NumPy ref (s) | speed-up | max abs diff |")
  print("|---|---|---|---|---|---|---|")
  for side in (int(s) for s in a.sides.split(",")):
    img = image(side)
    x = jnp.asarray(img)
    t0 = time.perf_counter()
    out = tf.texture_filter(x, **kw).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
      t0 = time.perf_counter()
      tf.texture_filter(x, **kw).block_until_ready()
      times.append(time.perf_counter() - t0)
    steady = float(np.mean(times)) if times else float("nan")
    mp = side * side / 1e6
    if mp <= a.reference_max_mp:
      t0 = time.perf_counter()
      want = ref.texture_filter(img, a.sigma_s, a.sigma_r, a.levels)[0]
      t_ref = time.perf_counter() - t0
      diff = float(np.max(np.abs(np.asarray(out) - want)))
      ref_s, speed, diff_s = f"{t_ref:.1f}", f"{t_ref / steady:.1f}x", f"{diff:.1e}"
    else:
      ref_s = speed = diff_s = "not run"
    print(f"| {side}x{side} | {mp:.2f} | {first:.1f} | {steady:.2f} | {ref_s} | {speed} | {diff_s} |",
          flush=True)
  print(f"\ncommand: python benchmarks/texture_filter.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
  main()

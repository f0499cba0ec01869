"""Throughput of the diffusion feature-extraction pass and of a DDIM sampling loop (issue 21).

    python benchmarks/diffusion_features.py                       # reduced CPU mode
    python benchmarks/diffusion_features.py --model=sd15 --img_size=512 --batch=8 --dtype=bfloat16 \
        --weights_dir=SD15 [--official=/path/to/generic-diffusion-feature]          # on a GPU

Ours: one jitted pass image -> VAE sample -> noise at t -> UNet forward -> the `practical` taps
(float16), and a 50-step DDIM loop (`lax.fori_loop` over the UNet, eta 0). Both report images/s
(median of `--repeats` after one warm-up) and the compiled memory analysis (`memory_analysis()`:
argument, output and temporary bytes). `--model=sd15` is SD-1.5 (random weights unless
`--weights_dir`, same speed); `--model=small` is the SD block structure (two layers per block,
so the practical ids exist) at a tenth of the width (channels 32/64/128/128) for CPU runs.

With `--official` (the generic-diffusion-feature checkout, diffusers installed, a CUDA device and
`--weights_dir`), the official `FeatureExtractor` (PyTorch hooks storing every requested activation,
float16) runs the same images at the same t in the same command, and the ratio is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

SMALL = dict(block_out_channels=(32, 64, 128, 128), norm_num_groups=16)
SMALL_VAE = dict(block_out_channels=(32, 64, 128, 128), layers_per_block=1, norm_num_groups=16)


def median_time(fn, repeats):
  import jax
  jax.block_until_ready(fn())  # warm-up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def mib(n):
  return f"{n / 2 ** 20:.1f}"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", choices=("small", "sd15"), default="small")
  p.add_argument("--weights_dir", default="")
  p.add_argument("--img_size", type=int, default=128)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--ddim_steps", type=int, default=50)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--official", default="")
  args = p.parse_args(argv)
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from models.diffusion import activation_sets, extractor, schedules, weights
  from models.diffusion.unet import SD15, UNet
  from models.diffusion.vae import AutoencoderKL
  if args.weights_dir:
    unet = weights.load_component(args.weights_dir, "unet")
    vae = weights.load_component(args.weights_dir, "vae")
  else:
    unet = UNet(**{**SD15, **(SMALL if args.model == "small" else {})}, rngs=nnx.Rngs(0))
    vae = AutoencoderKL(**(SMALL_VAE if args.model == "small" else {}), rngs=nnx.Rngs(1))
  dtype = jnp.dtype(args.dtype)
  cast = lambda s: jax.tree.map(lambda a: a.astype(dtype), s)
  ids, _ = activation_sets.load("practical")
  spec = extractor.Spec(taps=ids)
  graphdef, state = nnx.split((unet, vae))
  state = cast(state)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(-1, 1, (args.batch, args.img_size, args.img_size, 3)), dtype)
  text = jnp.asarray(rng.normal(size=(1, 77, 768)), dtype)
  abar = jnp.asarray(schedules.alphas_cumprod())

  @jax.jit
  def extract(state, images, key):
    u, v = nnx.merge(graphdef, state)
    return extractor.extract(u, v, None, images, text, key, None, spec)[0]

  ts = jnp.asarray(schedules.timesteps("ddim", args.ddim_steps))

  @jax.jit
  def sample(state, key):
    u, v = nnx.merge(graphdef, state)
    lat = args.img_size // 8
    x = jax.random.normal(key, (args.batch, lat, lat, 4), dtype)
    ctx = jnp.broadcast_to(text, (args.batch, 77, 768))

    def body(i, x):
      t = ts[i]
      prev = jnp.where(i + 1 < ts.shape[0], ts[jnp.minimum(i + 1, ts.shape[0] - 1)], -1)
      eps, _ = u(x, t, ctx)
      return schedules.ddim_step(x, eps, t, prev, abar).astype(dtype)
    x = jax.lax.fori_loop(0, ts.shape[0], body, x)
    return v.decode(x / v.scaling_factor)

  key = jax.random.key(0)
  rows = []
  for name, fn, fargs in (("extraction (practical taps)", extract, (state, images, key)),
                          (f"DDIM sampling, {args.ddim_steps} steps", sample, (state, key))):
    t0 = time.perf_counter()
    compiled = fn.lower(*fargs).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    sec = median_time(lambda: compiled(*fargs), args.repeats)
    rows.append([name, f"{args.batch / sec:.3f}", f"{sec:.2f}", f"{compile_s:.0f}",
                 mib(mem.argument_size_in_bytes), mib(mem.output_size_in_bytes),
                 mib(mem.temp_size_in_bytes)])
  from ml_pipelines.jobs.common import markdown_table
  print(f"model {args.model}, {args.img_size} px, batch {args.batch}, {args.dtype}, "
        f"backend {jax.default_backend()} ({len(jax.devices())} device(s))")
  print(markdown_table(["pass", "images/s", "s / batch", "compile s", "args MiB", "out MiB",
                        "temp MiB"], rows))
  if args.official:
    official_rate = run_official(args, images)
    ours = float(rows[0][1])
    print(f"official extractor: {official_rate:.3f} images/s; ours / official = "
          f"{ours / official_rate:.2f}x")


def run_official(args, images):
  """The official FeatureExtractor on the same images (needs CUDA, diffusers, real weights)."""
  import torch
  if not torch.cuda.is_available() or not args.weights_dir:
    raise SystemExit("--official needs a CUDA device and --weights_dir")
  sys.path.insert(0, os.path.join(args.official, "feature"))
  from diffusion_feature import FeatureExtractor  # noqa: E402  (the authors' code)
  from models.diffusion import activation_sets
  ids, _ = activation_sets.load("practical")
  from diffusers import StableDiffusionImg2ImgPipeline
  pipe = StableDiffusionImg2ImgPipeline.from_pretrained(args.weights_dir, use_safetensors=True,
                                                        torch_dtype=torch.float16).to("cuda")
  fe = FeatureExtractor(layer={i: True for i in ids}, version="1-5", device="cuda",
                        dtype="float16", img_size=args.img_size, external_model=pipe)
  x = torch.from_numpy(np.asarray(images, np.float32)).permute(0, 3, 1, 2).cuda()
  prompt = fe.encode_prompt(prompt_str="a photo")

  def once():
    fe.extract(prompt, batch_size=args.batch, image=x, image_type="tensor", t=50)
    torch.cuda.synchronize()
  once()
  t = []
  for _ in range(args.repeats):
    s = time.perf_counter()
    once()
    t.append(time.perf_counter() - s)
  return args.batch / float(np.median(t))


if __name__ == "__main__":
  main()

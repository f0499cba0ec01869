"""Stable Diffusion feature extraction to ArrayRecord: image -> VAE latent -> noise at t -> one UNet
forward -> the requested taps (float16, NHWC), batched and sharded over every device.

    python -m ml_pipelines.jobs.diffusion_features \
        --config=configs/diffusion/features.py:horse21_practical --out=DIR \
        [--config.key=value ...] [--cpu_devices=N]

Writes `DIR/<split>.array_record-*` with one example per image: every tap id of the set (and `attn`
when attention maps are asked), `name`, and `label` when `<image>.npy` exists. The config and the
tap shapes go to `DIR/features.json`. See `configs/diffusion/features.py` for the variants.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def image_files(images_dir: str) -> list[str]:
  """The images under `images_dir`, sub-directories included (Cityscapes keeps one per city)."""
  files = sorted(f for f in glob.glob(os.path.join(images_dir, "**", "*"), recursive=True)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir!r}")
  return files


def read_image(path: str) -> np.ndarray:
  from PIL import Image
  return np.asarray(Image.open(path).convert("RGB"))


def load_models(config):
  """(unet, vae, controlnet or None, text states [1, 77, D]) from `config.weights_dir`."""
  import jax.numpy as jnp
  from models import convert
  from models.diffusion import extractor, lora, text_encoder, weights
  unet = weights.load_component(config.weights_dir, "unet")
  if config.lora:
    lora.merge_lora(unet, convert.load_state_dict(config.lora), config.lora_scale)
  vae = weights.load_component(config.weights_dir, "vae")
  controlnet = weights.load_component(config.controlnet_dir) if config.controlnet_dir else None
  enc = text_encoder.load_text_encoder(config.weights_dir)
  text = enc.hidden_states(jnp.asarray(extractor.prompt_tokens(config.prompt,
                                                               enc.context_length)))
  return unet, vae, controlnet, text


def make_extract_fn(unet, vae, controlnet, spec, mesh, dtype):
  """A jitted `fn(states, images, text, key, cond) -> taps` with batch-sharded inputs/outputs and
  replicated (`dtype`-cast) weights; `states` is returned beside it."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec as P
  from models.diffusion import extractor
  modules = (unet, vae, controlnet)
  graphdef, states = nnx.split(modules)
  states = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                        states)
  replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  states = jax.device_put(states, replicated)

  def fn(states, images, text, key, cond):
    u, v, c = nnx.merge(graphdef, states)
    taps, _, _ = extractor.extract(u, v, c, images.astype(dtype), text.astype(dtype), key,
                                   None if cond is None else cond.astype(dtype), spec)
    return taps
  jitted = jax.jit(fn, in_shardings=(replicated, batch, replicated, replicated,
                                     None if controlnet is None else batch),
                   out_shardings=batch)
  return jitted, states


def run(config, out_dir: str, models=None) -> dict:
  """Extracts every image of `config.images_dir`; `models` = load_models(config) when given.
  Returns {tap id: per-example shape}."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import Mesh
  from ml_pipelines.data import records
  from models.diffusion import activation_sets, extractor
  ids, attention = activation_sets.load(
      config.activation_set, tuple(a for a in config.attention.split(",") if a) or None)
  if config.controlnet_dir and not config.denoising_from:
    raise ValueError("controlnet_dir needs denoising_from (the released variant uses 60)")
  unet, vae, controlnet, text = models or load_models(config)
  spec = extractor.Spec(taps=ids, attention=attention, t=config.t,
                        denoising_from=config.denoising_from, control_scale=config.control_scale)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  n_dev = len(jax.devices())
  bs = -(-config.batch_size // n_dev) * n_dev
  fn, states = make_extract_fn(unet, vae, controlnet, spec, mesh, jnp.dtype(config.dtype))
  files = image_files(config.images_dir)
  key = jax.random.key(config.seed)
  shapes = {}

  def examples():
    for start in range(0, len(files), bs):
      chunk = files[start:start + bs]
      raw = np.stack([extractor.resize(read_image(f), config.img_size) for f in chunk])
      pad = bs - len(chunk)
      raw = np.concatenate([raw, np.repeat(raw[-1:], pad, axis=0)]) if pad else raw
      images = extractor.to_unit_range(raw)
      cond = extractor.canny(raw) if controlnet is not None else None
      taps = jax.device_get(fn(states, images, text, jax.random.fold_in(key, start), cond))
      for i, f in enumerate(chunk):
        ex = {k: np.asarray(v[i]) for k, v in taps.items()}
        shapes.update({k: list(v.shape) for k, v in ex.items()})
        ex["name"] = np.asarray(os.path.basename(f))
        label = os.path.splitext(f)[0] + ".npy"
        if os.path.exists(label):
          ex["label"] = np.load(label)
        yield ex
  records.write(out_dir, config.split, examples())
  with open(os.path.join(out_dir, "features.json"), "w") as f:
    json.dump({"config": config.to_dict(), "shapes": shapes, "order": list(ids) + (
        ["attn"] if attention else [])}, f, indent=1)
  return shapes


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True, help="configs/diffusion/features.py:<dataset>_<set>")
  p.add_argument("--out", required=True)
  p.add_argument("--cpu_devices", type=int, default=0)
  args, rest = p.parse_known_args(argv)
  import importlib.util
  import jax
  from ml_pipelines.trainer import config as config_lib
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  path, _, arg = args.config.partition(":")
  spec = importlib.util.spec_from_file_location("_features_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_features_config(arg) if arg else module.get_features_config()
  config = config_lib.override(config, [r.removeprefix("--config.") for r in rest])
  print(json.dumps(run(config, args.out), indent=1))


if __name__ == "__main__":
  main()

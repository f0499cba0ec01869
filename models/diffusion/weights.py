"""Importer from the diffusers / transformers safetensors layout users download
(`stable-diffusion-v1-5/stable-diffusion-v1-5`: `unet/`, `vae/`, `text_encoder/`; ControlNets such
as `lllyasviel/sd-controlnet-canny` are a directory of their own). Each component directory holds a
`config.json` and `diffusion_pytorch_model.safetensors` (`model.safetensors` for the text encoder).

Our modules carry diffusers' names, so a state-dict key is our path with '.' for '/'
(`models.convert.TorchStateDict`: OIHW -> HWIO convs, [out, in] -> [in, out] linears); every
missing, unexpected or mis-shaped key is listed by name. The model is built abstractly and filled,
so no
random initialisation of the full network is paid.

    unet = load_component("weights/sd15", "unet")
    vae = load_component("weights/sd15", "vae")
    controlnet = load_component("weights/sd-controlnet-canny")   # a component directory itself
"""
from __future__ import annotations

import json
import os

from flax import nnx

from models import convert
from models.diffusion.controlnet import CONTROLNET_OPTIONS, ControlNet
from models.diffusion.unet import UNet, options_from_diffusers
from models.diffusion.vae import VAE_OPTIONS, AutoencoderKL

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
BUILDERS = {  # diffusers `_class_name` -> (our class, the config keys we read)
    "UNet2DConditionModel": (UNet, None),
    "AutoencoderKL": (AutoencoderKL, VAE_OPTIONS),
    "ControlNetModel": (ControlNet, CONTROLNET_OPTIONS),
}


def component_dir(weights_dir: str, component: str | None = None) -> str:
  """`weights_dir/component` (or `weights_dir` itself), checked: a missing component is named."""
  path = os.path.join(weights_dir, component) if component else weights_dir
  if not os.path.isdir(path):
    have = sorted(os.listdir(weights_dir)) if os.path.isdir(weights_dir) else []
    raise FileNotFoundError(
        f"weights directory {weights_dir!r} is missing the component {component!r} "
        f"(expected {path}/config.json and {path}/{WEIGHT_FILES[0]}; present: {have}). "
        "Download it from the model's Hugging Face repository in the diffusers layout.")
  files = [f for f in WEIGHT_FILES if os.path.exists(os.path.join(path, f))]
  if not os.path.exists(os.path.join(path, "config.json")) or not files:
    raise FileNotFoundError(f"component {component or path!r} in {weights_dir!r} needs config.json "
                            f"and one of {WEIGHT_FILES}; found {sorted(os.listdir(path))}")
  return path


def read_config(path: str) -> dict:
  with open(os.path.join(path, "config.json")) as f:
    return json.load(f)


def build_abstract(cls, options: dict):
  """The module with abstract (shape-only) variables: nothing is initialised."""
  return nnx.eval_shape(lambda: cls(**options, rngs=nnx.Rngs(0)))


def load_component(weights_dir: str, component: str | None = None) -> nnx.Module:
  """Our UNet / VAE / ControlNet with the weights of a diffusers component directory."""
  path = component_dir(weights_dir, component)
  config = read_config(path)
  kind = config.get("_class_name")
  if kind not in BUILDERS:
    raise ValueError(f"{path}: unsupported diffusers class {kind!r}; supported: {sorted(BUILDERS)}")
  cls, allowed = BUILDERS[kind]
  options = options_from_diffusers(config) if allowed is None else options_from_diffusers(
      config, allowed)
  model = build_abstract(cls, options)
  weights = next(p for f in WEIGHT_FILES if os.path.exists(p := os.path.join(path, f)))
  return convert.load_into(model, convert.load_state_dict(weights))

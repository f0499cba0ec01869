"""LoRA (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models", Eq. 3) merged into
the UNet's attention projections: W <- W + scale * (alpha / r) * B A, with A [r, in], B [out, r].

Reads the two file layouts a trained SD-1.5 LoRA comes in (diffusers module names in both):
- diffusers / PEFT (`pytorch_lora_weights.safetensors`): `unet.<module>.lora_A.weight`,
  `unet.<module>.lora_B.weight` (alpha = r unless a `<module>.alpha` key is given);
- kohya-ss with diffusers names: `lora_unet_<module with '_' for '.'>.lora_down.weight`,
  `.lora_up.weight`, `.alpha`.
A LoRA already merged into a full checkpoint (the content-shift release, converted with
`convert_sd_to_diffusers.py`) is simply another `unet/` directory for `weights.load_component`.
Text-encoder entries are ignored here; a file entry naming no projection of ours is an error.
"""
from __future__ import annotations

import re

import numpy as np
from flax import nnx

from models import convert

_PEFT = re.compile(r"^(?:unet\.)?(.+)\.lora_([AB])\.weight$")
_KOHYA = re.compile(r"^lora_unet_(.+)\.(lora_down|lora_up)\.weight$")


def _kohya_module(name: str, modules: set[str]) -> str | None:
  """kohya's '_'-joined module name back to our dotted one (matched against the model's names)."""
  flat = {m.replace(".", "_"): m for m in modules}
  return flat.get(name)


def lora_deltas(state_dict, modules: set[str]) -> dict[str, np.ndarray]:
  """{dotted module name: delta W in PyTorch layout [out, in]} of a LoRA state dict."""
  parts: dict[str, dict] = {}
  for key, value in state_dict.items():
    if key.startswith(("text_encoder.", "lora_te")):
      continue
    if m := _PEFT.match(key):
      parts.setdefault(m.group(1), {})["down" if m.group(2) == "A" else "up"] = value
    elif m := _KOHYA.match(key):
      module = _kohya_module(m.group(1), modules)
      if module is None:
        raise KeyError(f"LoRA entry {key!r} names no projection of the UNet")
      parts.setdefault(module, {})[m.group(2)[5:]] = value
    elif key.endswith(".alpha"):
      name = key[:-len(".alpha")].removeprefix("unet.")
      if name.startswith("lora_unet_"):
        name = _kohya_module(name[len("lora_unet_"):], modules) or name
      parts.setdefault(name, {})["alpha"] = float(np.asarray(value))
    else:
      raise KeyError(f"unrecognised LoRA entry {key!r}")
  deltas = {}
  for module, p in parts.items():
    down, up = np.asarray(p["down"], np.float32), np.asarray(p["up"], np.float32)
    rank = down.shape[0]
    deltas[module] = (p.get("alpha", rank) / rank) * (up @ down)
  return deltas


def merge_lora(unet: nnx.Module, state_dict, scale: float = 1.0) -> nnx.Module:
  """Adds `scale` times the LoRA update to the UNet's projection kernels, in place."""
  params = dict(nnx.state(unet, nnx.Param).flat_state())
  kernels = {convert.torch_key(path)[:-len(".weight")]: path for path in params
             if path[-1] == "kernel"}
  deltas = lora_deltas(state_dict, set(kernels))
  unknown = sorted(set(deltas) - set(kernels))
  if unknown:
    raise KeyError(f"LoRA modules not in the UNet: {unknown[:5]}")
  updates = []
  for module, delta in deltas.items():
    path = kernels[module]
    var = params[path]
    if var[...].shape != delta.T.shape:
      raise ValueError(f"LoRA {module}: update {delta.T.shape}, kernel {var[...].shape}")
    updates.append((path, var.replace(var[...] + scale * delta.T.astype(var[...].dtype))))
  nnx.update(unet, nnx.State.from_flat_path(updates))
  return unet

"""PyTorch state dicts (official DilateFormer / PSLT checkpoints, torchvision / timm ResNet and ViT)
<-> our parameters and batch statistics.

Our backbones use the official module names, so a state-dict key is our path with '.' for '/' and
the leaf renamed (kernel/scale -> weight, mean/var -> running_mean/running_var); ResNet's
`downsample_conv`/`downsample_bn` are `downsample.0`/`.1`. Conv kernels are OIHW in PyTorch and HWIO
here, Linear weights [out, in] there and [in, out] here. Buffers PyTorch stores but we recompute
(`num_batches_tracked`, `relative_position_index`, `attn_mask`) are skipped.

    sd = convert.load_state_dict("dilateformer-t.pth")
    convert.load_into(model, sd)            # checks every key is used and every shape matches
    sd2 = convert.to_state_dict(model)      # back, with timm names
"""
from __future__ import annotations

import re

import numpy as np
from flax import nnx

_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}
_RENAMES = ((re.compile(r"\bdownsample_conv\b"), "downsample.0"),
            (re.compile(r"\bdownsample_bn\b"), "downsample.1"))
_SKIP = re.compile(r"(num_batches_tracked|relative_position_index|attn_mask)$")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """A `.safetensors` or `.pth`/`.pt` state dict (optionally under 'model'/'state_dict') as NumPy."""
  if str(path).endswith(".safetensors"):
    from safetensors.numpy import load_file
    return dict(load_file(path))
  import torch
  sd = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("model", "state_dict", "model_ema"):
    if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
      sd = sd[key]
      break
  return {k.removeprefix("module."): v.float().numpy() for k, v in sd.items()}


def torch_key(path: tuple) -> str:
  """Our state path (tuple of keys) -> the PyTorch state-dict key."""
  *mods, leaf = (str(p) for p in path)
  key = ".".join(mods + [_LEAF.get(leaf, leaf)])
  for pat, rep in _RENAMES:
    key = pat.sub(rep, key)
  return key


def _to_ours(leaf: str, value: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if leaf == "kernel" and value.ndim == 2:
    return value.T
  return value


def _to_torch(leaf: str, value: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  if leaf == "kernel" and value.ndim == 2:
    return value.T
  return value


def _variables(model):
  return nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))


def load_into(model: nnx.Module, state_dict: dict[str, np.ndarray], strict: bool = True):
  """Writes the PyTorch `state_dict` into `model`'s parameters and batch statistics, in place."""
  state = _variables(model)
  sd = {k: np.asarray(v) for k, v in state_dict.items() if not _SKIP.search(k)}
  used, errors = set(), []
  flat = []
  for path, var in state.flat_state():
    key = torch_key(path)
    if key not in sd:
      errors.append(f"missing in state dict: {key} (ours {'/'.join(map(str, path))})")
      continue
    value = _to_ours(str(path[-1]), sd[key]).astype(np.float32)
    if value.shape != tuple(var.shape):
      errors.append(f"shape of {key}: ours {tuple(var.shape)}, theirs {value.shape}")
      continue
    used.add(key)
    flat.append((path, var.replace(value)))
  unused = sorted(set(sd) - used)
  if unused:
    errors.append(f"unused state-dict keys: {unused[:10]}{' ...' if len(unused) > 10 else ''}")
  if errors and strict:
    raise ValueError("State dict does not match the model:\n  " + "\n  ".join(errors))
  nnx.update(model, nnx.State.from_flat_path(flat))
  return model


def to_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
  """Our parameters and batch statistics as a PyTorch (torchvision / timm / official) state dict."""
  return {torch_key(path): np.ascontiguousarray(_to_torch(str(path[-1]), np.asarray(var[...])))
          for path, var in _variables(model).flat_state()}

"""Checkpoint converters: how a family of pretrained checkpoints names and lays out our variables.

A converter maps each of our variable paths ('/'-joined: `layer1/0/conv1/kernel`, `bn1/mean`) to the
file keys it is read from, converts those arrays to our layout (`to_ours`) and back (`to_file`, for
export and tests). `match` is the one loading routine: it pairs our variables with a file's arrays
through a converter and lists every missing, unexpected and mis-shaped key by name.

Registered converters (`names()`; a module adds its own with `@convert.register("name")` on a
`Converter` subclass, found on first use like models):
- `ours`: our own checkpoints, keys are our paths.
- `timm_vit`, `dilateformer`, `pslt`, `torchvision_mobilenet_v2`: PyTorch state dicts of timm's
  VisionTransformer, the official DilateFormer / PSLT code and torchvision's MobileNetV2
  (`models.mobilenet_v2`). Our modules carry the official names, so a key is our path with
  '.' for '/' and the leaf renamed (kernel/scale -> weight, mean/var -> running_mean/running_var).
  Conv kernels are OIHW in PyTorch and HWIO here, Linear weights [out, in] there and [in, out] here.
  Buffers PyTorch stores but we recompute (`num_batches_tracked`, `relative_position_index`,
  `attn_mask`) are never loaded.
- `timm_resnet`, `torchvision_resnet`: the same, and a block's `downsample_conv`/`downsample_bn` are
  `downsample.0`/`.1`. The deep-hashing models (`models.hashing`) keep the ResNet stem and
  layer1..3 under `trunk/` and full-width layer4 copies under `layer4/blocks/`,
  `global_stage/blocks/`, `local_stage/blocks/`; each of these copies reads the file's `layer4`, as
  the papers initialise every branch from ImageNet weights.
- `vit_npz`: the original Google ViT `.npz` (big_vision / vision_transformer, incl. augreg):
  `embedding`, `cls`, `Transformer/posembed_input/pos_embedding`, `Transformer/encoderblock_<i>/
  {LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value,out}, LayerNorm_2,
  MlpBlock_3/Dense_{0,1}}`, `Transformer/encoder_norm`, `head`.

    sd = convert.load_state_dict("dilateformer-t.pth")
    convert.load_into(model, sd)            # checks every key is used and every shape matches
    sd2 = convert.to_state_dict(model)      # back, with timm names
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np
from flax import nnx

from ml_pipelines.registry import Registry

_CONVERTERS = Registry("checkpoint converter", "models")
register = _CONVERTERS.register


def names() -> list[str]:
  return _CONVERTERS.names()


def get(name: str) -> "Converter":
  """The converter registered as `name`; an unknown name lists the valid ones."""
  return _CONVERTERS.get(name)()


class Converter:
  """Our path -> file keys, and the layout change between them. Default: one key, same layout."""
  ignore: re.Pattern | None = None  # file keys that are never loaded (recomputed buffers)

  def keys(self, path: str) -> tuple[str, ...]:
    return (path,)

  def rename_file(self, theirs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """The file's arrays under the keys `keys` names (default: as they are)."""
    return theirs

  def to_ours(self, path: str, arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0]

  def to_file(self, path: str, value: np.ndarray) -> dict[str, np.ndarray]:
    return {self.keys(path)[0]: value}


@register("ours")
class Ours(Converter):
  """Our own checkpoints (`ml_pipelines.train` workdirs): keys are our paths."""


# --- PyTorch state dicts --------------------------------------------------------------------------
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}
_RENAMES = ((re.compile(r"\bdownsample_conv\b"), "downsample.0"),
            (re.compile(r"\bdownsample_bn\b"), "downsample.1"))
_BUFFERS = re.compile(r"(num_batches_tracked|relative_position_index|attn_mask)$")


def torch_key(path) -> str:
  """Our path ('/'-joined string or tuple of keys) -> the PyTorch state-dict key."""
  parts = path.split("/") if isinstance(path, str) else [str(p) for p in path]
  *mods, leaf = parts
  key = ".".join(mods + [_LEAF.get(leaf, leaf)])
  for pat, rep in _RENAMES:
    key = pat.sub(rep, key)
  return key


@register("timm_vit")
@register("dilateformer")
@register("pslt")
@register("torchvision_mobilenet_v2")
class TorchStateDict(Converter):
  """PyTorch modules with our module names: OIHW <-> HWIO convs, [out, in] <-> [in, out] linears."""
  ignore = _BUFFERS

  def keys(self, path):
    return (torch_key(path),)

  def to_ours(self, path, arrays):
    (value,) = arrays
    if path.endswith("kernel") and value.ndim == 4:
      return value.transpose(2, 3, 1, 0)
    if path.endswith("kernel") and value.ndim == 2:
      return value.T
    return value

  def to_file(self, path, value):
    if path.endswith("kernel") and value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)
    elif path.endswith("kernel") and value.ndim == 2:
      value = value.T
    return {self.keys(path)[0]: value}


@register("timm_resnet")
@register("torchvision_resnet")
class TorchResNet(TorchStateDict):
  """torchvision / timm ResNet (same keys); hashing models' trunk and layer4 copies included."""
  _HASHING = ((re.compile(r"^trunk/"), ""),
              (re.compile(r"^(layer4|global_stage|local_stage)/blocks/"), "layer4/"))

  def keys(self, path):
    for pat, rep in self._HASHING:
      path = pat.sub(rep, path)
    return (torch_key(path),)


@register("vit_npz")
class GoogleViT(Converter):
  """The original ViT `.npz` (Flax names; kernels already HWIO / [in, out]). Attention q, k, v are
  separate [D, heads, head_dim] kernels there and one [D, 3D] `qkv` kernel here (q | k | v, each
  head-major, as timm); the output projection is [heads, head_dim, D] there. The ImageNet-21k
  files' `pre_logits` (representation) layer is never loaded: our ViT has none, and fine-tuning
  drops it (timm's npz loader too)."""
  ignore = re.compile(r"^pre_logits/")
  _BLOCK = re.compile(r"^blocks/(\d+)/(.+)$")
  _IN_BLOCK = {"norm1": "LayerNorm_0", "norm2": "LayerNorm_2",
               "attn/proj": "MultiHeadDotProductAttention_1/out",
               "mlp/fc1": "MlpBlock_3/Dense_0", "mlp/fc2": "MlpBlock_3/Dense_1"}
  _TOP = {"cls_token": "cls", "pos_embed": "Transformer/posembed_input/pos_embedding",
          "patch_embed/proj/kernel": "embedding/kernel", "patch_embed/proj/bias": "embedding/bias",
          "norm/scale": "Transformer/encoder_norm/scale",
          "norm/bias": "Transformer/encoder_norm/bias"}

  def keys(self, path):
    if path in self._TOP:
      return (self._TOP[path],)
    m = self._BLOCK.match(path)
    if not m:
      return (path,)
    block, rest = f"Transformer/encoderblock_{m.group(1)}", m.group(2)
    module, leaf = rest.rsplit("/", 1)
    if module == "attn/qkv":
      attn = f"{block}/MultiHeadDotProductAttention_1"
      return tuple(f"{attn}/{name}/{leaf}" for name in ("query", "key", "value"))
    return (f"{block}/{self._IN_BLOCK.get(module, module)}/{leaf}",)

  def to_ours(self, path, arrays):
    if path.endswith("attn/qkv/kernel"):  # 3 x [D, H, d] -> [D, 3 H d]
      return np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    if path.endswith("attn/qkv/bias"):  # 3 x [H, d] -> [3 H d]
      return np.concatenate([a.reshape(-1) for a in arrays])
    if path.endswith("attn/proj/kernel"):  # [H, d, D] -> [H d, D]
      (a,) = arrays
      return a.reshape(-1, a.shape[-1])
    return arrays[0]

  def to_file(self, path, value, num_heads: int = 1):
    """`num_heads` shapes the attention kernels as the original file does (any value reloads)."""
    keys = self.keys(path)
    if path.endswith("attn/qkv/kernel"):
      return {k: v.reshape(v.shape[0], num_heads, -1)
              for k, v in zip(keys, np.split(value, 3, axis=1))}
    if path.endswith("attn/qkv/bias"):
      return {k: v.reshape(num_heads, -1) for k, v in zip(keys, np.split(value, 3))}
    if path.endswith("attn/proj/kernel"):
      return {keys[0]: value.reshape(num_heads, -1, value.shape[-1])}
    return {keys[0]: value}


# --- matching -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Match:
  """What `match` found: `arrays` (our path -> value in our layout and dtype) and every problem."""
  arrays: dict[str, np.ndarray]
  missing: list[str]       # 'our/path <- file.key'
  unexpected: list[str]    # file keys no variable of ours reads
  misshaped: list[str]     # 'our/path <- file.key: ours (..), file (..)'
  skipped: list[str]       # our paths excluded by `skip`

  @property
  def problems(self) -> list[str]:
    return [f"{what} ({len(items)}): {', '.join(items)}" for what, items in
            (("missing in the file (ours <- file key)", self.missing),
             ("unexpected in the file (no variable of ours reads them)", self.unexpected),
             ("mis-shaped", self.misshaped)) if items]


def match(ours: Mapping[str, object], theirs: Mapping[str, np.ndarray], converter: Converter,
          skip: str | None = None) -> Match:
  """Pairs our variables (path -> anything with .shape/.dtype) with a file's arrays.

  Our paths matching the regex `skip` are not loaded, and the file keys they would read are not
  reported as unexpected (a new classifier head leaves the file's head unused).
  """
  skip_re = re.compile(skip) if skip else None
  theirs = converter.rename_file(theirs)
  arrays, missing, misshaped, skipped, used = {}, [], [], [], set()
  for path, var in ours.items():
    keys = converter.keys(path)
    if skip_re is not None and skip_re.search(path):
      skipped.append(path)
      used.update(keys)
      continue
    absent = [k for k in keys if k not in theirs]
    if absent:
      missing.append(f"{path} <- {', '.join(absent)}")
      continue
    used.update(keys)
    sources = [np.asarray(theirs[k]) for k in keys]
    shapes = ", ".join(str(s.shape) for s in sources)
    try:
      value = np.asarray(converter.to_ours(path, sources))
    except ValueError:  # the layout change itself failed on foreign shapes
      value = None
    if value is None or value.shape != tuple(var.shape):
      misshaped.append(f"{path} <- {', '.join(keys)}: ours {tuple(var.shape)}, file {shapes}")
      continue
    arrays[path] = value.astype(var.dtype)
  ignore = converter.ignore
  unexpected = sorted(k for k in theirs
                      if k not in used and not (ignore is not None and ignore.search(k)))
  return Match(arrays, missing, unexpected, misshaped, skipped)


# --- PyTorch files and in-place loading into a module ---------------------------------------------
def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """A `.safetensors` or `.pth`/`.pt`/`.bin` state dict (optionally under 'model'/'state_dict'),
  or the state dict of a TorchScript archive (`torch.jit.save`)."""
  if str(path).endswith(".safetensors"):
    from safetensors import numpy as st_numpy
    try:
      return dict(st_numpy.load_file(path))
    except TypeError:  # bfloat16, which NumPy cannot name: read through torch
      from safetensors.torch import load_file
      sd = load_file(path)
  else:
    import torch
    try:
      sd = torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError as e:  # a TorchScript archive (OpenAI's CLIP release): its parameters
      if "TorchScript" not in str(e):
        raise
      sd = torch.jit.load(path, map_location="cpu").state_dict()
  for key in ("model", "state_dict", "model_ema"):
    if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
      sd = sd[key]
      break
  return {k.removeprefix("module."): v.float().numpy() for k, v in sd.items()
          if hasattr(v, "numpy")}


def _variables(model):
  return nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))


def _path(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def load_into(model: nnx.Module, state_dict: Mapping[str, np.ndarray], strict: bool = True,
              converter: Converter = TorchStateDict()) -> nnx.Module:
  """Writes `state_dict` into `model`'s parameters and batch statistics, in place (the default
  converter reads timm / torchvision / DilateFormer / PSLT keys)."""
  flat = dict(_variables(model).flat_state())
  found = match({_path(p): v for p, v in flat.items()}, state_dict, converter)
  if found.problems and strict:
    raise ValueError("State dict does not match the model:\n  " + "\n  ".join(found.problems))
  loaded = [(p, v.replace(found.arrays[k])) for p, v in flat.items()
            if (k := _path(p)) in found.arrays]
  nnx.update(model, nnx.State.from_flat_path(loaded))
  return model


def to_state_dict(model: nnx.Module, converter: Converter = TorchStateDict()
                  ) -> dict[str, np.ndarray]:
  """Our parameters and batch statistics as a PyTorch (torchvision / timm / official) state dict."""
  out = {}
  for path, var in _variables(model).flat_state():
    for k, v in converter.to_file(_path(path), np.asarray(var[...])).items():
      out[k] = np.asarray(v).copy(order="C")  # (ascontiguousarray would make scalars 1-d)
  return out

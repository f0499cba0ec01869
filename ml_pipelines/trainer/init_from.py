"""Starting a run from pretrained weights: `config.init_from`, applied once at step 0.

    init_from = {path, converter="ours", skip=None, strict=True}

- path: our own run (its workdir or its `checkpoints/` directory: the newest checkpoint's
  parameters and batch statistics), a `.safetensors`, a PyTorch state dict `.pth`/`.pt`/`.bin`
  (possibly nested under 'model'/'state_dict'), or a `.npz`. Empty: train from scratch (so a
  config can carry the block and a run add `--config.init_from.path=FILE`).
- converter: how the file names and lays out our variables, one of `models.convert.names()`
  (`ours`, `timm_vit`, `timm_resnet`, `torchvision_resnet`, `dilateformer`, `pslt`, `vit_npz`, and
  whatever other modules register).
- skip: regex of our variable paths that are not loaded (they keep their fresh initialisation), e.g.
  a new classifier head `^head/`; the file keys they would read are not reported as unused.
- strict: every other variable must be read from the file with its shape, and every file key
  used (recomputed buffers such as `num_batches_tracked` aside); missing, unexpected and mis-shaped
  keys are listed by name in one error, or, when False, in one warning (the matching variables
  are still loaded). Loading nothing is always an error.

Parameters and floating-point batch statistics are loaded; RNG state is left as initialised. The
trainer calls `apply` only when the workdir holds no checkpoint: a resumed run restores its own.

    python -m ml_pipelines.train --config=configs/backbones/vit.py:imagenet2012 --workdir=/tmp/ft \
        --config.init_from.path=vit_base_patch16_224.safetensors
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ml_pipelines.registry import unknown_options
from ml_pipelines.trainer import checkpoint as checkpoint_lib
from models import convert

OPTIONS = ("path", "converter", "skip", "strict")
DEFAULTS = {"converter": "ours", "skip": None, "strict": True}


def _key_str(k) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def flat_paths(tree) -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_str(k) for k in kp): leaf for kp, leaf in leaves}


def _loadable(variables: Mapping[str, Any]) -> dict[str, Any]:
  """Every parameter, and the floating-point leaves of the rest (batch statistics)."""
  out = dict(flat_paths(variables["params"]))
  out.update({p: x for p, x in flat_paths(variables["rest"]).items()
              if jnp.issubdtype(x.dtype, jnp.floating)})
  return out


def read(path: str) -> dict[str, np.ndarray]:
  """The arrays of a pretrained file, or of our own run's newest checkpoint, by key."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.init_from.path {path!r} does not exist: give the pretrained "
                            f"weights with --config.init_from.path=FILE, or start from scratch "
                            f"with --config.init_from.path=''.")
  if os.path.isdir(path):
    norm = os.path.normpath(os.path.abspath(path))
    workdir = os.path.dirname(norm) if os.path.basename(norm) == "checkpoints" else norm
    _, state = checkpoint_lib.load_latest_arrays(workdir)
    return _loadable(state)
  if path.endswith(".npz"):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  if path.endswith((".safetensors", ".pth", ".pt", ".bin")):
    return convert.load_state_dict(path)
  raise ValueError(f"config.init_from.path {path!r}: unknown format; expected one of our workdirs, "
                   f"a .safetensors, a PyTorch .pth/.pt/.bin or a .npz.")


def apply(init_config, variables: dict, shardings: dict) -> dict:
  """`variables` {'params', 'rest'} (pure dicts) with the leaves read from `init_config.path`.

  Loaded leaves are placed with their leaf's sharding from `shardings` (same structure); skipped and
  non-loadable leaves are returned unchanged.
  """
  options = dict(init_config.to_dict() if hasattr(init_config, "to_dict") else init_config)
  unknown_options(options, OPTIONS, "init_from")
  options = {**DEFAULTS, **options}
  path, name = options.get("path", ""), options["converter"]
  if not path:  # a config's init_from block with no file: train from scratch
    return variables
  converter = convert.get(name)
  found = convert.match(_loadable(variables), read(path), converter, options["skip"] or None)
  where = f"init_from {path!r} (converter {name!r})"
  problems = "\n  ".join(found.problems)
  if not found.arrays:
    raise ValueError(f"{where}: no variable of the model was loaded.\n  {problems}")
  if problems and options["strict"]:
    raise ValueError(f"{where} does not match the model:\n  {problems}\nCheck the file and the "
                     f"converter; new layers go in init_from.skip (a regex of our paths), or set "
                     f"init_from.strict=False to load what matches.")
  if problems:
    warnings.warn(f"{where}: loading only the matching variables.\n  {problems}", stacklevel=2)

  def put(collection):
    def leaf(kp, x, sharding):
      value = found.arrays.get("/".join(_key_str(k) for k in kp))
      if value is None:
        return x
      return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree_util.tree_map_with_path(leaf, variables[collection], shardings[collection])

  print(f"Initialised {len(found.arrays)} variables from {path} (converter {name!r}"
        + (f", {len(found.skipped)} skipped by {options['skip']!r})" if found.skipped else ")"),
        flush=True)
  return {"params": put("params"), "rest": put("rest")}

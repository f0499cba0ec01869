"""The mesh and the one sharding rule engine.

Mesh axes are `data`, `fsdp`, `model`; a size of -1 takes the remaining devices. A parameter (or
batch-statistic, or optimizer-state) leaf gets the spec of the first rule whose regex matches its
'/'-joined path (re.search); unmatched leaves are replicated. Rule specs:
- `"replicate"`;
- `"fsdp"`: shard the largest dimension divisible by the `fsdp` axis size (replicate if none is);
- a tuple with one mesh axis name (or None) per dimension, e.g. `(None, "model")`: a dimension that
  does not divide by its axes' size fails with a message naming the leaf and the numbers.
Optimizer-state leaves take the sharding of the parameter they mirror (`optimizer_state_shardings`).
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import jax
import optax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from optim.paths import path_str

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")


def build_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  sizes = {a: int(mesh_config.get(a, 1)) for a in AXES}
  unknown = set(mesh_config.keys()) - set(AXES)
  if unknown:
    raise KeyError(f"Unknown mesh axes {sorted(unknown)}; the axes are {AXES}.")
  fill = [a for a, s in sizes.items() if s == -1]
  if len(fill) > 1:
    raise ValueError(f"Only one mesh axis may be -1, got {fill}.")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if fill:
    if len(devices) % fixed:
      raise ValueError(f"{len(devices)} devices do not divide by the fixed mesh axes {sizes}.")
    sizes[fill[0]] = len(devices) // fixed
  if math.prod(sizes.values()) != len(devices):
    raise ValueError(f"Mesh {sizes} needs {math.prod(sizes.values())} devices, have {len(devices)}.")
  grid = np.asarray(devices).reshape([sizes[a] for a in AXES])
  return Mesh(grid, AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over data x fsdp; the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_sizes(mesh: Mesh, **batch_sizes: int) -> None:
  """Each global batch size must split evenly over the batch axes (data x fsdp)."""
  shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
  for name, size in batch_sizes.items():
    if int(size) % shards:
      raise ValueError(f"{name}={size} does not divide over the {shards} batch shards of mesh "
                       f"{dict(mesh.shape)} (data x fsdp); use a multiple of {shards}.")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _spec_for(path: str, shape: tuple[int, ...], rules, mesh: Mesh) -> P:
  for regex, spec in rules:
    if not re.search(regex, path):
      continue
    if spec == "replicate":
      return P()
    if spec == "fsdp":
      n = mesh.shape["fsdp"]
      dims = [d for d in np.argsort(shape)[::-1] if n > 1 and shape[d] % n == 0]
      if not dims:
        return P()
      parts = [None] * len(shape)
      parts[int(dims[0])] = "fsdp"
      return P(*parts)
    spec = tuple(spec)
    if len(spec) != len(shape):
      raise ValueError(f"Sharding rule {regex!r} -> {spec} has {len(spec)} entries but {path!r} "
                       f"has shape {shape}.")
    for dim, axes in zip(shape, spec):
      if axes is None:
        continue
      size = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))
      if dim % size:
        raise ValueError(f"Sharding rule {regex!r}: dimension {dim} of {path!r} (shape {shape}) "
                         f"does not divide by mesh axes {axes} of size {size}.")
    return P(*spec)
  return P()


def tree_shardings(tree: Any, rules, mesh: Mesh) -> Any:
  """NamedSharding per leaf of a parameter-like tree (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: NamedSharding(mesh, _spec_for(path_str(p), tuple(np.shape(x)), rules, mesh)),
      tree)


def optimizer_state_shardings(tx, opt_state: Any, param_shardings: Any, mesh: Mesh) -> Any:
  """Shardings for an optimizer state: each copy of the parameter tree inside it (Adam's moments,
  a method's per-parameter buffers) takes the parameters' shardings (`optax.tree_map_params`);
  every other leaf (counts, a method's small statistics) is replicated. Per-group optimizers
  (`optax.multi_transform`) are handled like any other state."""
  repl = NamedSharding(mesh, P())
  # `optax.masked` / `multi_transform` states hold an empty MaskedNode where a parameter is not
  # theirs: it stays (no leaves, nothing to place).
  masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
  return optax.tree_map_params(tx, lambda v, s: v if masked(v) else s, opt_state, param_shardings,
                               transform_non_params=lambda _: repl, is_leaf=masked)

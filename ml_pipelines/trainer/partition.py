"""Trainable and frozen parameters: one nested parameter dict split by a path regex, and back.

`config.optimizer.trainable` (a regex over '/'-joined parameter paths, re.search; default: every
parameter) picks the parameters that get a gradient; the rest are `frozen`. The train step
differentiates with respect to the trainable part only, so frozen weights cost no gradient, no
optimizer state, no EMA copy and no finite check (big_vision and the Flax gemma example freeze the
same way: by what the optimizer is given, not by zeroing its updates). `optimizer.freeze` is the
complement: a regex of parameters to freeze.

Both parts are plain nested dicts holding only their own leaves (empty sub-dicts dropped), so
`merge(*split(tree, mask)) == tree`.
"""
from __future__ import annotations

import re
from typing import Any

from optim.paths import path_str

import jax


def trainable_mask(params: Any, trainable: str | None = None, freeze: str | None = None) -> Any:
  """Bool tree: True where the path matches `trainable` (all if None) and not `freeze`."""
  keep = re.compile(trainable) if trainable else None
  drop = re.compile(freeze) if freeze else None

  def pick(path, _):
    s = path_str(path)
    return bool((keep is None or keep.search(s)) and not (drop and drop.search(s)))
  return jax.tree_util.tree_map_with_path(pick, params)


def split(tree: dict, mask: dict) -> tuple[dict, dict]:
  """(leaves where mask is True, leaves where it is False), each a nested dict of its own leaves."""
  yes, no = {}, {}
  for key, value in tree.items():
    if isinstance(value, dict):
      a, b = split(value, mask[key])
      if a:
        yes[key] = a
      if b:
        no[key] = b
    elif mask[key]:
      yes[key] = value
    else:
      no[key] = value
  return yes, no


def merge(a: dict, b: dict) -> dict:
  """The nested dict holding the leaves of both (their paths are disjoint)."""
  out = dict(a)
  for key, value in b.items():
    out[key] = merge(out[key], value) if key in out else value
  return out


def count(tree: Any) -> int:
  """Number of scalar entries in a tree of arrays or shape structs."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))

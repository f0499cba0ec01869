"""Loading a config file (`path.py[:arg]`), applying `--config.key=value` overrides, checking keys.

Every config file defines `get_config(arg: str | None) -> ml_collections.ConfigDict` and shows its
own launch command in its docstring (big_vision style).
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from typing import Any, Iterable

import ml_collections

# Keys the trainer reads; a config may not add others at the top level (typos fail loudly).
TOP_LEVEL_KEYS = frozenset({
    "seed", "total_steps", "batch_size", "eval_batch_size", "log_every", "eval_every",
    "checkpoint_every", "keep_checkpoints", "keep_period", "mesh", "sharding_rules", "model",
    "task", "data", "optimizer", "description", "init_from", "stages", "ema_decay",
})
# Keys whose change makes a checkpoint incompatible (the state would mean something else).
COMPATIBILITY_KEYS = ("model", "task", "optimizer", "data.name", "seed")


def load(spec: str) -> ml_collections.ConfigDict:
  """Imports `path.py` and calls its `get_config(arg)`; `spec` is `path.py` or `path.py:arg`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} does not exist.")
  module_spec = importlib.util.spec_from_file_location("_run_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None) if arg else module.get_config()
  check_keys(config)
  return config


def check_keys(config: ml_collections.ConfigDict) -> None:
  unknown = sorted(set(config.keys()) - TOP_LEVEL_KEYS)
  if unknown:
    raise KeyError("; ".join(_unknown_message(k, TOP_LEVEL_KEYS) for k in unknown))


def _unknown_message(key: str, valid: Iterable[str]) -> str:
  close = difflib.get_close_matches(key.split(".")[-1], list(valid), n=3, cutoff=0.5)
  hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
  return f"Unknown config key {key!r}.{hint}"


def parse_value(text: str) -> Any:
  """`3` -> 3, `1e-3` -> 0.001, `(1,2)` -> (1, 2), `True` -> True, anything else stays a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def override(config: ml_collections.ConfigDict, assignments: Iterable[str]) -> ml_collections.ConfigDict:
  """Applies `key.sub=value` assignments; an unknown key fails with the closest valid names."""
  for assignment in assignments:
    key, sep, text = assignment.partition("=")
    if not sep:
      raise ValueError(f"Override {assignment!r} is not of the form key=value.")
    *parents, leaf = key.split(".")
    node = config
    for i, name in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or name not in node:
        valid = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise KeyError(_unknown_message(".".join(parents[:i + 1]), valid))
      node = node[name]
    if leaf not in node:
      raise KeyError(_unknown_message(key, node.keys()))
    value = parse_value(text)
    old = node[leaf]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    with node.ignore_type():
      node[leaf] = value
  return config


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts / ConfigDicts -> {'a.b.c': leaf}."""
  if isinstance(tree, (dict, ml_collections.ConfigDict)):
    out = {}
    for k in tree.keys():
      out.update(flatten(tree[k], f"{prefix}{k}."))
    return out
  if isinstance(tree, (list, tuple)):
    return {prefix[:-1]: [flatten(t) if isinstance(t, (dict, ml_collections.ConfigDict)) else t
                          for t in tree]}
  return {prefix[:-1]: tree}


def incompatible_keys(saved: dict, current: ml_collections.ConfigDict) -> list[str]:
  """Flattened keys under COMPATIBILITY_KEYS whose values differ between two configs."""
  a, b = flatten(saved), flatten(current.to_dict())
  keys = set(a) | set(b)
  relevant = [k for k in keys if any(k == c or k.startswith(c + ".") for c in COMPATIBILITY_KEYS)]
  return sorted(k for k in relevant if _norm(a.get(k)) != _norm(b.get(k)))


def _norm(v):
  return list(map(_norm, v)) if isinstance(v, (list, tuple)) else v

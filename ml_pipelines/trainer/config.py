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


class UsageError(ValueError):
  """A mistake on the command line (a config key, an override's value, the workdir): the command
  line prints its message in one line, without a traceback."""


class UnknownKeyError(UsageError, KeyError):
  """An unknown config key; its message names the closest valid keys."""
  __str__ = ValueError.__str__


class MissingConfigFileError(UsageError, FileNotFoundError):
  pass

# Keys the trainer reads; a config may not add others at the top level (typos fail loudly).
TOP_LEVEL_KEYS = frozenset({
    "seed", "total_steps", "batch_size", "eval_batch_size", "log_every", "eval_every",
    "checkpoint_every", "keep_checkpoints", "keep_period", "mesh", "sharding_rules", "model",
    "task", "data", "optimizer", "description", "init_from", "stages", "ema_decay",
})
# Keys whose change makes a checkpoint incompatible: the saved state would mean something else
# (parameter shapes, optimizer and task state) or the run would not continue the trajectory it
# started (seed, the loss, the optimizer, the data). A name covers the keys below it.
COMPATIBILITY_KEYS = ("seed", "model", "optimizer", "task", "data.name", "total_steps", "stages",
                      "ema_decay")
# Keys under those that only shape evaluation and outputs; they may change on a resumed run.
COSMETIC_KEYS = ("task.plot_dir", "task.topk", "task.radius")
# Top-level keys the trainer reads with a default, so any config can be given them on the command
# line (`--config.ema_decay=0.9999`, `--config.stages="({'steps': 100}, ...)"`) without declaring
# them.
OPTIONAL_DEFAULTS = {"ema_decay": 0.0, "keep_period": 0, "stages": ()}


def load(spec: str) -> ml_collections.ConfigDict:
  """Imports `path.py` and calls its `get_config(arg)`; `spec` is `path.py` or `path.py:arg`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise MissingConfigFileError(f"Config file {path!r} does not exist.")
  module_spec = importlib.util.spec_from_file_location("_run_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None) if arg else module.get_config()
  check_keys(config)
  return config


def check_keys(config: ml_collections.ConfigDict) -> None:
  unknown = sorted(set(config.keys()) - TOP_LEVEL_KEYS)
  if unknown:
    raise UnknownKeyError("; ".join(_unknown_message(k, TOP_LEVEL_KEYS) for k in unknown))


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


def typed_value(key: str, text: str, default: Any) -> Any:
  """`text` parsed and checked against the type of the key's current value `default`.

  int: an integer (1.5 and True are refused); float: an int or a float, stored as float; bool:
  True or False; str: a string, None, or else the text as written (`--config.data.name=7` is
  '7'); tuple/list: a tuple or list, each element checked against the default's elements when they
  share one type; a None default: anything; a config block: refused (set its keys).
  """
  value = parse_value(text)
  if isinstance(default, str):
    return value if value is None or isinstance(value, str) else text
  try:
    return _coerce(value, default)
  except TypeError as e:
    raise UsageError(f"--config.{key}={text}: {e} (the default is {default!r}).") from None


def _coerce(value: Any, default: Any) -> Any:
  kind = type(default).__name__
  if default is None:
    return value
  if isinstance(default, ml_collections.ConfigDict):
    raise TypeError("this is a block of keys; set its keys one by one (--config.KEY.SUB=...)")
  if isinstance(default, str):
    if value is not None and not isinstance(value, str):
      raise TypeError(f"expected a string, got {value!r}")
    return value
  if isinstance(default, bool):
    if not isinstance(value, bool):
      raise TypeError(f"expected True or False, got {value!r}")
    return value
  if isinstance(default, (int, float)):
    numeric = (int, float) if isinstance(default, float) else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric):
      raise TypeError(f"expected {'a number' if isinstance(default, float) else 'an integer'}, "
                      f"got {value!r}")
    return float(value) if isinstance(default, float) else value
  if isinstance(default, (tuple, list)):
    if value is None:
      return None
    if not isinstance(value, (tuple, list)):
      raise TypeError(f"expected a {kind} such as ('a', 'b') or (1, 2), got {value!r}")
    kinds = {type(d) for d in default}
    if len(kinds) == 1 and not isinstance(default[0], (ml_collections.ConfigDict, dict)):
      try:
        value = [_coerce(v, default[0]) for v in value]
      except TypeError as e:
        raise TypeError(f"an element: {e}") from None
    return type(default)(value)
  return value


def override(config: ml_collections.ConfigDict, assignments: Iterable[str]) -> ml_collections.ConfigDict:
  """Applies `key.sub=value` assignments; an unknown key fails with the closest valid names, a
  value of the wrong type names the key (`typed_value`)."""
  for assignment in assignments:
    key, sep, text = assignment.partition("=")
    if not sep:
      raise UsageError(f"Override {assignment!r} is not of the form key=value.")
    *parents, leaf = key.split(".")
    node = config
    for i, name in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or name not in node:
        valid = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise UnknownKeyError(_unknown_message(".".join(parents[:i + 1]), valid))
      node = node[name]
    if leaf not in node and not (node is config and key in OPTIONAL_DEFAULTS):
      raise UnknownKeyError(_unknown_message(key, node.keys()))
    value = typed_value(key, text, node[leaf] if leaf in node else OPTIONAL_DEFAULTS[key])
    with node.ignore_type():
      node[leaf] = value
  return config


def prepare_workdir(path: str) -> None:
  """Creates the run directory `path`; what is wrong with an unusable path is said in one line.

  Remote paths (`gs://...`) are left to the storage layer."""
  if "://" in path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f"--workdir={path} is a file, not a directory; give a directory path.")
  parent = os.path.abspath(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UsageError(f"--workdir={path} cannot be created: {parent} is a file.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UsageError(f"--workdir={path} cannot be created: {e.strerror}.") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UsageError(f"--workdir={path} is not writable by this user.")


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


def _under(key: str, names: Iterable[str]) -> bool:
  return any(key == n or key.startswith(n + ".") for n in names)


def schedule_uses_total_steps(optimizer: dict) -> bool:
  """Whether the learning rate at a step depends on `total_steps` (cosine and step schedules
  are stretched over the run, and so is a warm-up given as a fraction); a constant rate after a
  fixed warm-up does not, so such a run may be extended."""
  return (optimizer.get("schedule", "constant") != "constant"
          or bool(optimizer.get("warmup_fraction", 0.0)))


def incompatible_keys(saved: dict, current: ml_collections.ConfigDict) -> list[str]:
  """Flattened keys under COMPATIBILITY_KEYS (less COSMETIC_KEYS) whose values differ between
  two configs; `total_steps` only when either config's schedule is stretched over the run."""
  saved_dict, now_dict = dict(saved), current.to_dict()
  a, b = flatten(saved_dict), flatten(now_dict)
  names = [k for k in COMPATIBILITY_KEYS if k != "total_steps"]
  if any(schedule_uses_total_steps(dict(c.get("optimizer") or {})) for c in (saved_dict, now_dict)):
    names.append("total_steps")
  relevant = [k for k in set(a) | set(b) if _under(k, names) and not _under(k, COSMETIC_KEYS)]
  return sorted(k for k in relevant if _norm(a.get(k)) != _norm(b.get(k)))


def _norm(v):
  return list(map(_norm, v)) if isinstance(v, (list, tuple)) else v

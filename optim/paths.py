"""Parameter paths as '/'-joined strings, and regex labels over a parameter tree.

Groups and masks always come from path regexes in the config, never from hard-coded module names.
A path looks like `audio_encoder/layer1/0/conv1/kernel`.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax


def path_str(path) -> str:
  """A key path (from `jax.tree_util.tree_flatten_with_path`) as 'a/b/0'."""
  return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def paths(tree: Any) -> Any:
  """The tree with every leaf replaced by its path string."""
  return jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), tree)


def match(tree: Any, regex: str | None) -> Any:
  """Bool tree: True where the leaf's path matches `regex` (re.search). None matches nothing."""
  pattern = re.compile(regex) if regex else None
  return jax.tree_util.tree_map_with_path(
      lambda p, _: bool(pattern and pattern.search(path_str(p))), tree)


def labels(tree: Any, groups: Mapping[str, str], default: str = "other") -> Any:
  """Per-leaf group name: the first group whose regex matches the path, else `default`."""
  compiled = [(name, re.compile(rx)) for name, rx in groups.items()]

  def label(p, _):
    s = path_str(p)
    for name, rx in compiled:
      if rx.search(s):
        return name
    return default
  return jax.tree_util.tree_map_with_path(label, tree)

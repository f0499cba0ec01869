"""One registry mechanism for models, datasets, tasks and optimizer transforms.

A registry maps a name to a factory. Modules register themselves with a decorator; on a miss the
registry imports every module of its package once, so adding `models/my_net.py` with
`@models.register("my_net")` is all a new model needs -- no central list to edit.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import Any, Callable


class Registry:
  """Name -> factory table whose entries live in the modules of one package."""

  def __init__(self, kind: str, package: str):
    self.kind = kind
    self.package = package
    self._entries: dict[str, Callable[..., Any]] = {}
    self._scanned = False

  def register(self, name: str, fn: Callable[..., Any] | None = None):
    """Registers `fn` under `name`; usable as `@registry.register("name")`."""
    def add(f):
      if name in self._entries and self._entries[name] is not f:
        raise ValueError(f"{self.kind} {name!r} is registered twice "
                         f"({self._entries[name].__module__} and {f.__module__}).")
      self._entries[name] = f
      return f
    return add(fn) if fn is not None else add

  def _scan(self):
    if self._scanned:
      return
    self._scanned = True
    pkg = importlib.import_module(self.package)
    for info in pkgutil.iter_modules(pkg.__path__):
      if not info.name.startswith("_"):
        importlib.import_module(f"{self.package}.{info.name}")

  def names(self) -> list[str]:
    self._scan()
    return sorted(self._entries)

  def get(self, name: str) -> Callable[..., Any]:
    if name not in self._entries:
      self._scan()
    if name not in self._entries:
      close = difflib.get_close_matches(name, self._entries, n=3)
      hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
      raise KeyError(f"Unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}.")
    return self._entries[name]


def unknown_options(options, valid, what: str) -> None:
  """Raises KeyError naming each key of `options` not in `valid`, with the closest valid names."""
  valid = sorted(valid)
  msgs = []
  for key in sorted(set(options) - set(valid)):
    close = difflib.get_close_matches(key, valid, n=3)
    msgs.append(f"Unknown {what} option {key!r}." +
                (f" Did you mean {', '.join(map(repr, close))}?" if close else ""))
  if msgs:
    raise KeyError(" ".join(msgs) + f" Valid: {', '.join(valid)}.")


def call_checked(fn: Callable[..., Any], options: dict, what: str, **fixed) -> Any:
  """`fn(**fixed, **options)`; an option `fn` does not take fails with the closest names."""
  target = fn.__init__ if inspect.isclass(fn) else fn
  params = inspect.signature(target).parameters
  if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
    unknown_options(options, [n for n in params if n not in fixed and n != "self"], what)
  return fn(**fixed, **options)

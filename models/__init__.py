"""Flax NNX models behind one registry, built one way: `models.build(spec, seed=..., **overrides)`.

A model module registers a factory `fn(*, rngs: nnx.Rngs, **kwargs) -> nnx.Module` with
`@models.register("name")`. Variants are separate names (`resnet18`, `dilateformer_tiny`, ...) whose
factories call one constructor with that variant's row of the module's variant table.

`spec` is a registered name or a config block `{name, **kwargs}` (a run's `config.model`); an option
the factory does not take fails with the closest valid names.

    model = models.build("resnet18", num_classes=10)
    model = models.build(config.model, seed=config.seed)   # exactly what the trainer builds
"""
from __future__ import annotations

from typing import Any, Mapping

from flax import nnx

from ml_pipelines.registry import Registry, call_checked

_REGISTRY = Registry("model", __name__)
register = _REGISTRY.register
names = _REGISTRY.names


def build(spec: str | Mapping[str, Any], *, seed: int = 0, rngs: nnx.Rngs | None = None,
          **overrides) -> nnx.Module:
  """The registered model `spec` names, with parameters from `seed` (or `rngs`)."""
  if isinstance(spec, str):
    name, options = spec, {}
  else:
    options = dict(spec.to_dict() if hasattr(spec, "to_dict") else spec)
    name = options.pop("name")
  if rngs is None:
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
  return call_checked(_REGISTRY.get(name), {**options, **overrides}, f"model {name!r}", rngs=rngs)


def factory(name: str):
  """The registered constructor itself (for code that inspects it, not for building)."""
  return _REGISTRY.get(name)

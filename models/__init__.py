"""Flax NNX models behind one registry: `models.get(name, **overrides)`.

A model module registers a factory `fn(*, rngs: nnx.Rngs, **kwargs) -> nnx.Module` with
`@models.register("name")`. Variants are separate names (`resnet18`, `dilateformer_tiny`, ...) whose
factories call one constructor with that variant's row of the module's variant table.
"""
from flax import nnx

from ml_pipelines.registry import Registry

_REGISTRY = Registry("model", __name__)
register = _REGISTRY.register
names = _REGISTRY.names
factory = _REGISTRY.get  # the registered constructor itself


def get(name: str, *, rngs: nnx.Rngs | None = None, seed: int = 0, **overrides) -> nnx.Module:
  """Builds the registered model `name`; `overrides` replace the variant's defaults."""
  if rngs is None:
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
  return _REGISTRY.get(name)(rngs=rngs, **overrides)

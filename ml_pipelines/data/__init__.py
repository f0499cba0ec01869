"""Datasets behind one registry: `data.get(name)(config.data, split) -> Dataset`.

A dataset module registers a builder with `@data.register("name")`. Builders return a `Dataset`: a
random-access source (in-memory arrays, `tfds.data_source`, or our ArrayRecord files) plus the
element spec the trainer checks every batch against.
"""
from ml_pipelines.registry import Registry
from ml_pipelines.data.dataset import Dataset, ArraySource, spec_of

_REGISTRY = Registry("dataset", __name__)
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get

__all__ = ["Dataset", "ArraySource", "spec_of", "register", "names", "get"]

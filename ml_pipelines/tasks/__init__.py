"""Tasks: what a method computes from a model and a batch (see `base.Task`).

A family registers its task classes with `@tasks.register("name")`; the trainer builds
`tasks.get(config.task.name)(config)`.
"""
from ml_pipelines.registry import Registry

_REGISTRY = Registry("task", __name__)
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get

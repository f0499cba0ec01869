"""Optax transformations for the papers' optimizer-side methods, and `build` for a config's chain.

A method transform registers a factory with `@optim.register("name")`:
`factory(*, param_groups: dict[str, str], **options) -> optax.GradientTransformationExtraArgs`.
`param_groups` maps a group name (`audio`, `visual`, `fusion`, ...) to a path regex from the config;
`optim.paths` turns it into per-leaf labels. The trainer calls
`tx.update(grads, opt_state, params, grad_fn=..., step=..., rng=..., **task_tx_args)`, so a
transform takes what it needs by keyword and ignores the rest (`**extra_args`).
"""
from ml_pipelines.registry import Registry

_REGISTRY = Registry("optimizer transform", __name__)
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get


def build(config, total_steps: int, count_offset: int = 0):
  """The optax chain a config's `optimizer` block describes (see `optim.chain`)."""
  from optim.chain import build_chain
  return build_chain(config, total_steps, count_offset)

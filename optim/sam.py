"""Sharpness-aware minimisation on a chosen parameter subset (Foret et al., "Sharpness-Aware
Minimization for Efficiently Improving Generalization", ICLR 2021, Eq. 2-3).

  eps = rho * g_S / ||g_S||,   g_SAM = grad L(w + eps)

`g_S` is the gradient restricted to the perturbed subset `S` (the groups named in `groups`, all
parameters when empty); the norm is taken over the whole subset (`normalize="global"`, the paper),
per group (`"group"`: one norm per modality, what a per-modality SAM needs), or per tensor
(`"tensor"`: MIE's official code, `p += rho * g_p / ||g_p||`). A zero norm gives a zero perturbation
(`optax.contrib.normalize` returns NaN there). The second gradient comes from the trainer's
`grad_fn(params) -> grads` (same batch and RNG, batch statistics untouched), so the perturbed pass
never writes batch-norm statistics; with `rho == 0` it is skipped (`lax.cond`) and the update is
exactly the base gradient. Cost: two forward/backward passes per step.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm

NORMALIZE = ("global", "group", "tensor")


def _sq(x):
  return jnp.sum(jnp.square(x.astype(jnp.float32)))


def perturbation(grads: Any, weights: Any, rho, normalize: str, labels: Any | None = None) -> Any:
  """`eps` per leaf: `weights` (a per-leaf 0/1 scalar, python or traced) selects the subset.

  `labels` (per-leaf group names) is needed for `normalize="group"`.
  """
  if normalize not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
  g_leaves, treedef = jax.tree_util.tree_flatten(grads)
  w_leaves = treedef.flatten_up_to(weights)
  sq = [w * _sq(g) for g, w in zip(g_leaves, w_leaves)]
  if normalize == "tensor":
    norms = [jnp.sqrt(s) for s in sq]
  elif normalize == "global":
    total = jnp.sqrt(sum(sq))
    norms = [total] * len(sq)
  else:
    if labels is None:
      raise ValueError("normalize='group' needs labels")
    l_leaves = treedef.flatten_up_to(labels)
    per = {}
    for s, l in zip(sq, l_leaves):
      per[l] = per.get(l, 0.0) + s
    norms = [jnp.sqrt(per[l]) for l in l_leaves]
  eps = []
  for g, w, n in zip(g_leaves, w_leaves, norms):
    scale = w * rho / jnp.where(n > 0, n, 1.0)
    eps.append((scale * g.astype(jnp.float32)).astype(g.dtype))
  return jax.tree_util.tree_unflatten(treedef, eps)


def sam_gradient(grads, params, grad_fn, eps, skip):
  """`grad_fn(params + eps)`, or `grads` itself when `skip` (bool, python or traced)."""
  def perturbed():
    shifted = jax.tree_util.tree_map(lambda p, e: p + e.astype(p.dtype), params, eps)
    out = grad_fn(shifted)
    return jax.tree_util.tree_map(lambda o, g: o.astype(g.dtype), out, grads)
  if isinstance(skip, bool):
    return grads if skip else perturbed()
  return jax.lax.cond(skip, lambda: grads, perturbed)


def subset_weights(tree: Any, param_groups: dict[str, str], groups: str) -> tuple[Any, Any]:
  """(per-leaf 0./1. weights, per-leaf labels) for a comma-separated list of group names."""
  labels = mm.labels(tree, param_groups)
  names = [g.strip() for g in groups.split(",") if g.strip()]
  unknown = set(names) - set(param_groups)
  if unknown:
    raise ValueError(f"SAM groups {sorted(unknown)} are not in param_groups {sorted(param_groups)}")
  weights = jax.tree_util.tree_map(lambda l: 1.0 if (not names or l in names) else 0.0, labels)
  return weights, labels


@optim.register("sam")
def sam(*, param_groups: dict[str, str], rho: float = 0.05, groups: str = "",
        normalize: str = "global") -> optax.GradientTransformationExtraArgs:
  """SAM gradient with the perturbation restricted to `groups` (comma-separated names of
  `param_groups`; empty = every parameter). Needs the trainer's `grad_fn`. `rho` works with
  `optax.inject_hyperparams`."""
  if normalize not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, grad_fn, **extra_args):
    del extra_args
    weights, labels = subset_weights(updates, param_groups, groups)
    eps = perturbation(updates, weights, rho, normalize, labels)
    skip = (rho == 0) if isinstance(rho, (int, float)) else (jnp.asarray(rho) == 0)
    return sam_gradient(updates, params, grad_fn, eps, skip), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

"""MMPareto: Pareto integration of the multimodal and unimodal gradients per encoder (Wei & Hu,
"MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance", ICML 2024, Alg. 1;
official code GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py and min_norm_solvers.py).

The task's loss is `L_mm + sum_u L_u` (fused CE plus each modality's unimodal CE), so the incoming
gradient of encoder u is `g = g_mm + g_u`. The task names the unimodal losses in `aux["grad_terms"]`
= {u: L_u}, keyed by the modality's param-group name; the trainer passes their gradients as
`term_grads` = {u: params-shaped grads of L_u} (docs/extending.md). For each modality group u
(flattened over the whole group, as the code's `concat`):
  g_mm = g - g_u;  if cos(g_mm, g_u) > 0: (w_mm, w_u) = (0.5, 0.5)
  else MGDA min-norm of two (min_norm_solvers `_min_norm_element_from2`):
     w_mm = 0.999 if <g_mm,g_u> >= |g_mm|^2; 0.001 if <g_mm,g_u> >= |g_u|^2;
            else (|g_u|^2 - <g_mm,g_u>) / |g_mm - g_u|^2;   w_u = 1 - w_mm
  per tensor: new = 2 (w_mm g_mm + w_u g_u);  d = |g| / |new|;
     g <- gamma * d * new if d > 1 else gamma * new      (gamma = 1.5; `new = 0` gives 0)
Parameters outside the modality groups (fusion head) keep the total gradient, as in the code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm
from optim.paths import path_str


def pareto_weights(mm_sq, uni_sq, dot) -> tuple[jax.Array, jax.Array]:
  """(w_mm, w_u): 0.5/0.5 when the cosine is positive, else the two-point min-norm solution."""
  denom = mm_sq + uni_sq - 2 * dot
  c = (uni_sq - dot) / jnp.where(denom > 0, denom, 1.0)
  c = jnp.where(dot >= mm_sq, 0.999, jnp.where(dot >= uni_sq, 0.001, c))
  w_mm = jnp.where(dot > 0, 0.5, c)
  return w_mm, 1.0 - w_mm


@optim.register("mmpareto")
def mmpareto(*, param_groups: dict[str, str], gamma: float = 1.5
             ) -> optax.GradientTransformationExtraArgs:
  """MMPareto; needs `term_grads` {modality: unimodal-loss grads} in the extra args."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, term_grads, **extra_args):
    del params, extra_args
    names = sorted(set(param_groups) & set(term_grads))
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
    group = treedef.flatten_up_to(mm.labels(updates, param_groups))
    uni = {}
    for m in names:
      by_path = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(term_grads[m])[0]}
      uni[m] = by_path
    out = [g for _, g in flat]
    for m in names:
      idx = [i for i, l in enumerate(group) if l == m]
      g_t = [flat[i][1].astype(jnp.float32) for i in idx]
      g_u = [uni[m][path_str(flat[i][0])].astype(jnp.float32) for i in idx]
      g_m = [a - b for a, b in zip(g_t, g_u)]
      dot = sum(jnp.vdot(a, b) for a, b in zip(g_m, g_u))
      w_mm, w_u = pareto_weights(sum(jnp.vdot(a, a) for a in g_m), sum(jnp.vdot(b, b) for b in g_u),
                                 dot)
      for i, t, a, b in zip(idx, g_t, g_m, g_u):
        new = 2 * (w_mm * a + w_u * b)
        nn = jnp.linalg.norm(new)
        d = jnp.linalg.norm(t) / jnp.where(nn > 0, nn, 1.0)
        out[i] = (gamma * jnp.where(d > 1, d, 1.0) * new).astype(flat[i][1].dtype)
    return jax.tree_util.tree_unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

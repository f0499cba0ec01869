"""AGM: adaptive gradient modulation (Li et al., "Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation", ICCV 2023, Eqs. 8-11; official code lihong2303/AGM_ICCV2023, run/*_main.py).

Per step, with M modalities (sorted names) and their unimodal logits (`modality_logits`; in the code
the Shapley-style `0.5 * (f(a, v) - f(0, v) + f(a, 0))`, which the task computes):
  s_m   = mean_i -log(max(p_m(y_i), 1e-8))                       (modality loss, lower = stronger)
  ratio_m = exp(M / (M - 1) * (mean_k s_k - s_m))                  (2 modalities: exp(s_v - s_a))
  opt_m   = the same from the running scores  s~_m = mean of s_m over all steps so far
  coeff_m = exp(alpha * min(opt_m - ratio_m, clip))                (clip 10 for CREMA-D, 7 for 3-modal)
then the running scores take in this step's s_m (cumulative mean, as the code's
`s~ <- s~ (t-1)/t + s/t`).

The code (model/CREMAD_net.py GradMod) trains on `out = m_a + m_v`, each Shapley logit behind a
backward hook that multiplies the gradient flowing into it by coeff_m: every parameter's gradient is
`sum_m coeff_m * dL/dtheta|_(through m_m)`, the fusion layer included (audio columns of a concat
fusion ~ k_a, visual ~ k_v, bias ~ (k_a + k_v) / 2 without BatchNorm), and with BatchNorm the
eval-mode "pad" passes contribute too. With `term_grads` {m: those per-path gradients} (the task's
`agm_shapley` option supplies them, `aux["grad_terms"]`), the update is exactly that:
`g + sum_m (coeff_m - 1) * g_m`. Without `term_grads`, the older approximation: modality m's
parameter group is scaled by coeff_m and the rest (the fusion layer) is left as it is.
Then, as the code's step: if an entry of a `clip_kernels` gradient (the fusion layer's weight)
leaves [-1, 1], all gradients are scaled by `min(1, 1 / (global_norm + 1e-6))` (torch
clip_grad_norm_ to 1); `clip_kernels=None` turns this off.
Modulation is active while `start_step <= step < end_step` (the running scores are updated on every
step); the clipping is applied on every step, as the code.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm
from optim.paths import path_str


class AGMState(NamedTuple):
  count: jax.Array    # steps seen
  running: jax.Array  # [M] cumulative-mean modality scores


def scores(logits: dict, labels: jax.Array, names: list[str]) -> jax.Array:
  """`s_m = mean_i -log(max(softmax(out_m)_i[y_i], 1e-8))`, [M]."""
  def one(m):
    p = jax.nn.softmax(logits[m].astype(jnp.float32), axis=-1)
    py = jnp.take_along_axis(p, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.mean(-jnp.log(jnp.maximum(py, 1e-8)))
  return jnp.stack([one(m) for m in names])


def coefficients(s: jax.Array, running: jax.Array, alpha, clip) -> jax.Array:
  m = s.shape[0]
  ratio = jnp.exp(m / (m - 1) * (jnp.mean(s) - s))
  opt = jnp.exp(m / (m - 1) * (jnp.mean(running) - running))
  return jnp.exp(alpha * jnp.minimum(opt - ratio, clip))


def _clip_if_large(grads, pattern):
  """torch `clip_grad_norm_(params, 1.0)` when an entry of a `pattern` leaf leaves [-1, 1]."""
  watched = [g for p, g in jax.tree_util.tree_flatten_with_path(grads)[0]
             if pattern.search(path_str(p))]
  if not watched:
    raise ValueError(f"AGM clip_kernels {pattern.pattern!r} matches no parameter")
  large = jnp.any(jnp.stack([jnp.max(jnp.abs(g.astype(jnp.float32))) for g in watched]) > 1.0)
  norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32)))
                      for g in jax.tree_util.tree_leaves(grads)))
  factor = jnp.where(large, jnp.minimum(1.0, 1.0 / (norm + 1e-6)), 1.0)
  return jax.tree_util.tree_map(lambda g: (g.astype(jnp.float32) * factor).astype(g.dtype), grads)


@optim.register("agm")
def agm(*, param_groups: dict[str, str], alpha: float = 0.1, clip: float = 10.0,
        start_step: int = 0, end_step: int = -1, clip_kernels: str | None = r"^fusion/.*kernel$"
        ) -> optax.GradientTransformationExtraArgs:
  """AGM; needs `modality_logits`, `labels`, `step`, and (exact hooks) `term_grads`. The modalities
  are the groups of `param_groups` that also have logits (their sorted names); initialise with
  `init` (running scores 0, as the code's first epoch)."""
  clip_re = re.compile(clip_kernels) if clip_kernels else None

  def init_fn(params):
    del params
    n = len(param_groups)
    return AGMState(count=jnp.zeros([], jnp.int32), running=jnp.zeros([n], jnp.float32))

  def update_fn(updates, state, params=None, *, modality_logits, labels, step, term_grads=None,
                **extra_args):
    del params, extra_args
    names = mm.modalities(param_groups, modality_logits)
    order = sorted(param_groups)
    idx = jnp.asarray([order.index(n) for n in names])
    s = scores(modality_logits, labels, names)
    running = state.running[idx]
    coeff = coefficients(s, running, alpha, clip)
    coeff = jnp.where(mm.in_window(step, start_step, end_step), coeff, 1.0)
    t = (state.count + 1).astype(jnp.float32)
    new_running = state.running.at[idx].set(running * (t - 1) / t + s / t)
    if term_grads is not None:
      missing = sorted(set(names) - set(term_grads))
      if missing:
        raise KeyError(f"AGM's term_grads lacks {missing}; the task names each Shapley logit's "
                       f"gradient path in aux['grad_terms'] (multimodal task: agm_shapley=True)")

      def hooked(g, *per):
        extra = sum((coeff[i] - 1.0) * t.astype(jnp.float32) for i, t in enumerate(per))
        return (g.astype(jnp.float32) + extra).astype(g.dtype)
      out = jax.tree_util.tree_map(hooked, updates, *[term_grads[n] for n in names])
    else:
      group = mm.labels(updates, param_groups)

      def scale(g, label):
        if label not in names:
          return g
        return (coeff[names.index(label)] * g.astype(jnp.float32)).astype(g.dtype)
      out = jax.tree_util.tree_map(scale, updates, group)
    if clip_re is not None:
      out = _clip_if_large(out, clip_re)
    return out, AGMState(count=state.count + 1, running=new_running)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

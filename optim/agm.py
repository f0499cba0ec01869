"""AGM: adaptive gradient modulation (Li et al., "Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation", ICCV 2023, Eqs. 8-11; official code lihong2303/AGM_ICCV2023, run/*_main.py).

Per step, with M modalities (sorted names) and their unimodal logits (`modality_logits`; in the code
the Shapley-style `0.5 * (f(a, v) - f(0, v) + f(a, 0))`, which the task computes):
  s_m   = mean_i -log(max(p_m(y_i), 1e-8))                       (modality loss, lower = stronger)
  ratio_m = exp(M / (M - 1) * (mean_k s_k - s_m))                  (2 modalities: exp(s_v - s_a))
  opt_m   = the same from the running scores  s~_m = mean of s_m over all steps so far
  coeff_m = exp(alpha * min(opt_m - ratio_m, clip))                (clip 10 for CREMA-D, 7 for 3-modal)
then the running scores take in this step's s_m (cumulative mean, as the code's
`s~ <- s~ (t-1)/t + s/t`). The code scales the gradient that flows back into modality m's output
(a backward hook); here the gradients of modality m's parameter group are scaled by coeff_m, which
is that hook's effect on m's encoder when its output enters the fused logits linearly.
Active while `start_step <= step < end_step` (the running scores are updated on every step).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm


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


@optim.register("agm")
def agm(*, param_groups: dict[str, str], alpha: float = 0.1, clip: float = 10.0,
        start_step: int = 0, end_step: int = -1) -> optax.GradientTransformationExtraArgs:
  """AGM; needs `modality_logits`, `labels`, `step`. The modalities are the groups of
  `param_groups` that also have logits (their sorted names); initialise with `init` (running scores 0,
  as the code's first epoch)."""

  def init_fn(params):
    del params
    n = len(param_groups)
    return AGMState(count=jnp.zeros([], jnp.int32), running=jnp.zeros([n], jnp.float32))

  def update_fn(updates, state, params=None, *, modality_logits, labels, step, **extra_args):
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
    group = mm.labels(updates, param_groups)

    def scale(g, label):
      if label not in names:
        return g
      return (coeff[names.index(label)] * g.astype(jnp.float32)).astype(g.dtype)
    out = jax.tree_util.tree_map(scale, updates, group)
    return out, AGMState(count=state.count + 1, running=new_running)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

"""OGM / OGM-GE: on-the-fly gradient modulation (Peng et al., "Balanced Multimodal Learning via
On-the-fly Gradient Modulation", CVPR 2022, Eqs. 5-10; official code GeWu-Lab/OGM-GE_CVPR2022 main.py).

Per step, from the task's unimodal logits (`modality_logits`, for concat fusion the modality's slice
of the fusion layer plus half its bias) and `labels`:

  s_u = sum_i softmax(out_u)_i[y_i]                                  (Eq. 5-6)
  rho = s_1 / s_0   (modalities sorted by name, so audio=0, visual=1)  (Eq. 7)
  coefficient "tanh" (official code, default):
     rho > 1:  k_1 = 1 - tanh(alpha * rho),      k_0 = 1
     else:     k_0 = 1 - tanh(alpha / rho),      k_1 = 1           (rho == 1 modulates modality 0)
  coefficient "tanh_relu" (earlier code, continuous at rho = 1):
     k_u = 1 - tanh(alpha * relu(rho_u - 1)),  rho_1 = rho, rho_0 = 1 / rho.
  OGM:     g <- k_u * g
  OGM-GE:  g <- k_u * g + N(0, sigma^2),  sigma = std(g) + 1e-8      (Eq. 10)
           (unbiased std of the unscaled gradient, per tensor, noise for both modalities).

Only 4-D gradients (conv kernels, stem and downsample included) of each modality's group are touched;
biases, normalisation and the fusion head are left alone, as in the code. It acts only while
`start_step <= step < end_step` (see `optim._multimodal` for the epoch conversion; the official
default is epochs 0..50, i.e. `end_step = 51 * steps_per_epoch`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm

COEFFICIENTS = ("tanh", "tanh_relu")
VARIANTS = ("ogm_ge", "ogm")


def coefficients(scores: jax.Array, alpha, coefficient: str = "tanh") -> jax.Array:
  """`[k_0, k_1]` from the two modalities' scores `[s_0, s_1]` (Eq. 10 / the earlier code)."""
  scores = scores.astype(jnp.float32)
  rho1 = scores[1] / scores[0]
  rho0 = 1.0 / rho1
  if coefficient == "tanh":
    k1_mod = 1.0 - jnp.tanh(alpha * jax.nn.relu(rho1))
    k0_mod = 1.0 - jnp.tanh(alpha * jax.nn.relu(rho0))
    k0 = jnp.where(rho1 > 1, 1.0, k0_mod)
    k1 = jnp.where(rho1 > 1, k1_mod, 1.0)
  elif coefficient == "tanh_relu":
    k0 = 1.0 - jnp.tanh(alpha * jax.nn.relu(rho0 - 1.0))
    k1 = 1.0 - jnp.tanh(alpha * jax.nn.relu(rho1 - 1.0))
  else:
    raise ValueError(f"coefficient must be one of {COEFFICIENTS}, got {coefficient!r}")
  return jnp.stack([k0, k1])


@optim.register("ogm_ge")
def ogm_ge(*, param_groups: dict[str, str], alpha: float = 0.8, variant: str = "ogm_ge",
           coefficient: str = "tanh", start_step: int = 0, end_step: int = -1
           ) -> optax.GradientTransformationExtraArgs:
  """OGM-GE (`variant="ogm_ge"`) or OGM (`variant="ogm"`). Needs extra args `modality_logits`,
  `labels`, `step`, and `rng` for the GE noise. `alpha` works with `optax.inject_hyperparams`."""
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if coefficient not in COEFFICIENTS:
    raise ValueError(f"coefficient must be one of {COEFFICIENTS}, got {coefficient!r}")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, modality_logits, labels, step, rng=None,
                **extra_args):
    del params, extra_args
    names = mm.modalities(param_groups, modality_logits)
    if len(names) != 2:
      raise ValueError(f"OGM-GE is defined for two modalities, got {names}")
    scores = jnp.stack([mm.true_class_prob_sum(modality_logits[n], labels) for n in names])
    k = coefficients(scores, alpha, coefficient)
    active = mm.in_window(step, start_step, end_step)
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    group = treedef.flatten_up_to(mm.labels(updates, param_groups))
    chosen = [i for i, (g, l) in enumerate(zip(leaves, group)) if g.ndim == 4 and l in names]

    def modulate(sel):
      noise = (mm.split_draw(jax.random.normal, rng, [g.shape for g in sel])
               if variant == "ogm_ge" else [None] * len(sel))
      res = []
      for i, g, z in zip(chosen, sel, noise):
        g32 = g.astype(jnp.float32)
        new = k[names.index(group[i])] * g32
        if z is not None:
          new = new + (jnp.std(g32, ddof=1) + 1e-8) * z
        res.append(new.astype(g.dtype))
      return res

    # Outside the window nothing is computed (no noise drawn).
    sel = jax.lax.cond(active, modulate, lambda sel: list(sel), [leaves[i] for i in chosen])
    out = list(leaves)
    for i, g in zip(chosen, sel):
      out[i] = g
    out = jax.tree_util.tree_unflatten(treedef, out)
    return out, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

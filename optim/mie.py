"""MIE / IGM: alternating unimodal training with flat gradient modification (Jiang, Chi, Yang,
"Interactive Multimodal Learning via Flat Gradient Modification", arXiv 2407.04587 / IJCAI 2025;
official code njustkmg/IJCAI25-IGM, train_CREMA.py and models/AudioVideo.py).

Stage schedule. `stage_steps` (comma-separated ints, e.g. "2600,5200,2600,5200,...") gives the length
in steps of each unimodal stage (the papers' epoch lists times `steps_per_epoch`; CREMA-D uses
[25, 50] epochs x 6, Kinetics-Sounds [25, 50, 25, 50]). Stage i trains modality
`sorted(param_groups)[i % M]` (audio first, as in the code); after the last stage the last stage goes
on. `stage(step, stage_steps)` below is what the task uses to pick the modality it trains.

Per step, for the current modality m (its group regex must cover its encoder and its head):
1. flat-loss mix, paper form (off by default): `eps = rho * g_p / ||g_p||` per tensor of m's
   parameters, `g <- (1 - flat_ratio) * g + flat_ratio * grad_fn(w + eps)` (the gradient of
   `(1 - flat_ratio) * L(w) + flat_ratio * L(w + eps)`). The official code's flat term is instead CE
   with *unmixed* labels of the head on the same mixed features, 0.7 / 0.3 with the mixup CE, at
   rho = 1e-10 (so no perturbation in effect): that is a loss, which the multimodal task computes
   (`mie_flat_ratio`, losses/multimodal.py `mie_loss`); `flat_ratio = 0` (default) skips this step
   and its second pass.
2. gradient modification: for every Dense kernel q of m and every Dense kernel n of the previous
   modality with q's shape, in order (the code's nested loop), `grad_W <- grad_W @ P_n` (torch layout
   [out, in]; for a Flax kernel [in, out] this is `P_n @ g`, P symmetric), with
       P_n = V diag(exp(-tau * (s - s_min) / (s_max - s_min))) V^T,   V, s = SVD(sum_t xbar_t xbar_t^T)
   where xbar_t is the batch-mean input of layer n. P = I during the first stage (no previous
   modality) and where s_max == s_min (the code divides by zero there).
3. the base optimizer steps. (The code leaves the SAM perturbation in the weights; with rho = 1e-10
   that is invisible, and an optax transform ahead of the base optimizer cannot add it: not replicated.)

Second moments. The code makes one extra pass over the training set with the stage's best
checkpoint. Here they accumulate on device during the last `collect_steps` steps of the previous
modality's stage (0 = the whole stage; one epoch's worth of steps is closest to the code), and P is
built by an SVD inside `lax.cond` at the first step of the next stage. Reloading the best checkpoint
and resetting the base optimizer at a stage switch are the task's business (`after_step`).

Extra args the task must pass through `tx_args` (besides `step`, `rng`, `grad_fn` from the trainer):
- `mie_inputs`: dict {kernel path: float array [d_in]}: for every 2-D kernel of every modality group
  (paths as `optim.paths.path_str`, e.g. `"audio_head/fc1/kernel"`), the mean over the batch of that
  Dense layer's input `x` (`jnp.mean(x, axis=0)`), shape `[kernel.shape[0]]`. Entries of modalities not
  trained at this step may be zeros (they are ignored). Every step has the same keys (jit).
  `input_shapes(params, param_groups)` lists them (`zero_inputs` gives a dict of zeros), and
  `source_kernels` which previous-modality kernel feeds each projector, so a caller (or a test)
  needs no knowledge of the state's layout; `with_moments` starts a state from given moments
  (e.g. a finished stage's), whose projectors are built at the next stage switch.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optim
from optim import _multimodal as mm
from optim import paths as paths_lib
from optim import sam as sam_lib


class MIEState(NamedTuple):
  moments: dict[str, jax.Array]  # kernel path -> [d_in, d_in] accumulated xbar xbar^T
  proj: dict[str, jax.Array]     # kernel path -> [d_in, d_in] projector applied to its gradient


def parse_steps(stage_steps) -> tuple[int, ...]:
  if isinstance(stage_steps, str):
    return tuple(int(s) for s in stage_steps.split(",") if s.strip())
  return tuple(int(s) for s in stage_steps)


def stage(step, stage_steps) -> tuple[jax.Array, jax.Array]:
  """(stage index, first step after that stage) at `step`; jit-friendly. The stage trains modality
  `sorted(param_groups)[stage % M]`."""
  ends = np.cumsum(parse_steps(stage_steps))
  idx = jnp.minimum(jnp.searchsorted(jnp.asarray(ends), jnp.asarray(step), side="right"),
                    len(ends) - 1)
  return idx, jnp.asarray(ends)[idx]


def modality_index(step, stage_steps, num_modalities: int) -> jax.Array:
  """Index into `sorted(param_groups)` of the modality trained at `step` (for the task's loss)."""
  return stage(step, stage_steps)[0] % num_modalities


def projector(moment: jax.Array, tau) -> jax.Array:
  """`V diag(exp(-tau (s - s_min) / (s_max - s_min))) V^T` from the SVD of `moment` (IGM eq. for P)."""
  _, s, vh = jnp.linalg.svd(moment.astype(jnp.float32))
  span = jnp.max(s) - jnp.min(s)
  z = jnp.where(span > 0, (s - jnp.min(s)) / jnp.where(span > 0, span, 1.0), 0.0)
  lam = jnp.exp(-tau * z)
  v = vh.T
  return (v * lam[None, :]) @ v.T


def _kernel_paths(params, param_groups, names):
  """[(path, label, shape)] of every 2-D leaf in a modality group, in flattening order."""
  labels = mm.labels(params, param_groups)
  out = []
  for (p, leaf), lab in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                            jax.tree_util.tree_leaves(labels)):
    if lab in names and np.ndim(leaf) == 2:
      out.append((paths_lib.path_str(p), lab, tuple(np.shape(leaf))))
  return out


def _sources(kernels, names):
  """Static map q -> [n, ...]: every kernel of the previous modality with q's shape, in order."""
  src = {}
  for q, lab, shape in kernels:
    prev = names[(names.index(lab) - 1) % len(names)]
    src[q] = [n for n, l2, s2 in kernels if l2 == prev and s2 == shape]
  return src


def input_shapes(params, param_groups) -> dict[str, tuple[int]]:
  """{kernel path: (d_in,)}: the keys and shapes `mie_inputs` must have."""
  return {q: (s[0],) for q, _, s in _kernel_paths(params, param_groups, sorted(param_groups))}


def zero_inputs(params, param_groups) -> dict[str, jax.Array]:
  """`mie_inputs` of zeros (a step that adds nothing to the moments)."""
  return {q: jnp.zeros(s, jnp.float32) for q, s in input_shapes(params, param_groups).items()}


def source_kernels(params, param_groups) -> dict[str, list[str]]:
  """{kernel q: the previous modality's kernels n_1, n_2, ... whose projectors q's gradient goes
  through, in order (empty: none)}."""
  names = sorted(param_groups)
  return _sources(_kernel_paths(params, param_groups, names), names)


def with_moments(state: MIEState, moments: dict[str, Any]) -> MIEState:
  """`state` with the given kernels' accumulated moments `sum_t xbar_t xbar_t^T` replaced."""
  unknown = set(moments) - set(state.moments)
  if unknown:
    raise KeyError(f"no MIE kernel {sorted(unknown)}; kernels: {sorted(state.moments)}")
  new = {q: jnp.asarray(moments.get(q, m), jnp.float32) for q, m in state.moments.items()}
  return state._replace(moments=new)


@optim.register("mie")
def mie(*, param_groups: dict[str, str], stage_steps, rho: float = 1e-10,
        flat_ratio: float = 0.0, tau: float = 0.4, collect_steps: int = 0
        ) -> optax.GradientTransformationExtraArgs:
  """MIE/IGM gradient transform; see the module docstring. Needs `grad_fn`, `step`, `mie_inputs`."""
  steps = parse_steps(stage_steps)
  if not steps or min(steps) <= 0:
    raise ValueError(f"stage_steps must be positive ints, got {stage_steps!r}")
  names = sorted(param_groups)
  starts = np.concatenate([[0], np.cumsum(steps)[:-1]])

  def init_fn(params):
    kernels = _kernel_paths(params, param_groups, names)
    eye = {q: jnp.eye(s[0], dtype=jnp.float32) for q, _, s in kernels}
    zeros = {q: jnp.zeros((s[0], s[0]), jnp.float32) for q, _, s in kernels}
    return MIEState(moments=zeros, proj=eye)

  def update_fn(updates, state, params=None, *, grad_fn, step, mie_inputs, **extra_args):
    del extra_args
    kernels = _kernel_paths(updates, param_groups, names)
    missing = [q for q, _, _ in kernels if q not in mie_inputs]
    if missing:
      raise KeyError(f"mie_inputs lacks {missing}; it must hold every modality's Dense-kernel input "
                     f"mean, keys {[q for q, _, _ in kernels]}")
    src = _sources(kernels, names)
    label_of = {q: lab for q, lab, _ in kernels}
    idx, end = stage(step, steps)
    cur = idx % len(names)
    step = jnp.asarray(step)

    # At the first step of stage i >= 1: P for the new modality's kernels from the previous
    # modality's moments; the new modality's moments restart.
    boundary = jnp.any(step == jnp.asarray(starts[1:], jnp.int32)) if len(starts) > 1 else False

    def switch(st):
      moments, proj = dict(st.moments), dict(st.proj)
      for q, lab, _ in kernels:
        starting = names.index(lab) == cur
        if src[q]:  # torch: grad @ P_n1 @ P_n2 ...; Flax kernel [in, out]: ... P_n2 P_n1 g
          p = projector(st.moments[src[q][0]], tau)
          for n in src[q][1:]:
            p = projector(st.moments[n], tau) @ p
          proj[q] = jnp.where(starting, p, proj[q])
        moments[q] = jnp.where(starting, 0.0, moments[q])
      return MIEState(moments, proj)

    if len(starts) > 1:
      state = jax.lax.cond(boundary, switch, lambda st: st, state)

    # 1. flat-loss mix on the current modality's parameters.
    labels = mm.labels(updates, param_groups)
    weights = jax.tree_util.tree_map(
        lambda l: (cur == names.index(l)).astype(jnp.float32) if l in names else 0.0, labels)
    eps = sam_lib.perturbation(updates, weights, rho, "tensor")
    skip = (flat_ratio == 0) if isinstance(flat_ratio, (int, float)) else (flat_ratio == 0)
    g_flat = sam_lib.sam_gradient(updates, params, grad_fn, eps, skip)
    mixed = jax.tree_util.tree_map(
        lambda g, f: ((1 - flat_ratio) * g.astype(jnp.float32)
                      + flat_ratio * f.astype(jnp.float32)).astype(g.dtype), updates, g_flat)

    # 2. projection of the current modality's Dense-kernel gradients.
    def project(p, g):
      q = paths_lib.path_str(p)
      if q not in state.proj:
        return g
      on = names.index(label_of[q]) == cur
      return jnp.where(on, state.proj[q] @ g.astype(jnp.float32), g.astype(jnp.float32)
                       ).astype(g.dtype)
    out = jax.tree_util.tree_map_with_path(project, mixed)

    # Accumulate the current modality's input second moments over the collection window.
    collect = (jnp.asarray(collect_steps) <= 0) | (step >= end - collect_steps)
    moments = {}
    for q, lab, _ in kernels:
      x = mie_inputs[q].astype(jnp.float32)
      on = (names.index(lab) == cur) & collect
      moments[q] = state.moments[q] + jnp.where(on, jnp.outer(x, x), 0.0)
    return out, MIEState(moments, state.proj)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

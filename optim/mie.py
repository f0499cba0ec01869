"""MIE / IGM: alternating unimodal training with flat gradient modification (Jiang, Chi, Yang,
"Interactive Multimodal Learning via Flat Gradient Modification", arXiv 2407.04587 / IJCAI 2025;
official code njustkmg/IJCAI25-IGM, train_CREMA.py and models/AudioVideo.py).

Stages. The run's `config.stages` alternate the modalities (configs/multimodal/mie.py: audio first;
CREMA-D [25, 50] epochs x 6, Kinetics-Sounds [25, 50, 25, 50]), each with a fresh optimizer as the
official code makes one per stage. The multimodal task trains the stage's modality
(`task.mie_modality`) and passes its index and projectors to this transform through `tx_args`.

Per step, for the current modality m (its group regex must cover its encoder and its head):
1. flat-loss mix, paper form (off by default): `eps = rho * g_p / ||g_p||` per tensor of m's
   parameters, `g <- (1 - flat_ratio) * g + flat_ratio * grad_fn(w + eps)` (the gradient of
   `(1 - flat_ratio) * L(w) + flat_ratio * L(w + eps)`). The official code's flat term is instead CE
   with *unmixed* labels of the head on the same mixed features, 0.7 / 0.3 with the mixup CE, at
   rho = 1e-10 (so no perturbation in effect): that is a loss, which the multimodal task computes
   (`mie_flat_ratio`, losses/multimodal.py `mie_loss`); `flat_ratio = 0` (default) skips this step
   and its second pass.
2. gradient modification: for every Dense kernel q of m, `grad_W <- grad_W @ P_n1 @ P_n2 ...` over
   the Dense kernels n of the previous modality with q's shape, in order (the code's nested loop;
   torch layout [out, in], so for a Flax kernel [in, out] this is `... P_n2 P_n1 g`, P symmetric),
       P_n = V diag(exp(-tau * (s - s_min) / (s_max - s_min))) V^T,   V, s = SVD(sum_t xbar_t xbar_t^T)
   where xbar_t is the batch-mean input of layer n (`projector`, `stage_projectors`). P = I in the
   first stage (no previous modality) and where s_max == s_min (the code divides by zero there).
3. the base optimizer steps. (The code leaves the SAM perturbation in the weights; with rho = 1e-10
   that is invisible, and an optax transform ahead of the base optimizer cannot add it.)

Second moments. The code makes one extra pass over the training set with the stage's best
checkpoint. Here the task accumulates them (`accumulate`) in its checkpointed state during the last
`mie_collect_steps` steps of a stage (one epoch's worth is closest to the code) and builds the next
stage's projectors at the stage switch (`Task.start_stage`), so they outlive the optimizer reset.

Extra args the task passes through `tx_args` (besides `grad_fn` from the trainer):
- `mie_modality`: int32 index into `sorted(param_groups)` of the modality this stage trains;
- `mie_projectors`: {kernel path: [d_in, d_in]} for that modality's Dense kernels (paths as
  `optim.paths.path_str`, e.g. `"visual_head/layers/0/kernel"`; `input_shapes` lists every kernel).
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax

import optim
from optim import _multimodal as mm
from optim import paths as paths_lib
from optim import sam as sam_lib


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
  """{kernel path: (d_in,)}: every modality's Dense kernels and the width of their inputs."""
  return {q: (s[0],) for q, _, s in _kernel_paths(params, param_groups, sorted(param_groups))}


def source_kernels(params, param_groups) -> dict[str, list[str]]:
  """{kernel q: the previous modality's kernels n_1, n_2, ... whose projectors q's gradient goes
  through, in order (empty: none)}."""
  names = sorted(param_groups)
  return _sources(_kernel_paths(params, param_groups, names), names)


def kernels_of(params, param_groups, modality: str) -> list[str]:
  """The Dense-kernel paths of one modality's group."""
  return [q for q, lab, _ in _kernel_paths(params, param_groups, sorted(param_groups))
          if lab == modality]


def zero_moments(params, param_groups) -> dict[str, jax.Array]:
  """{kernel path: [d_in, d_in] zeros} for every modality's Dense kernels."""
  return {q: jnp.zeros(s + s, jnp.float32) for q, s in input_shapes(params, param_groups).items()}


def accumulate(moments: dict, inputs: dict, kernels: list[str], on) -> dict:
  """`moments[q] += xbar xbar^T` for the kernels listed, where `on` (a traced bool) holds;
  `inputs[q]` is layer q's batch-mean input [d_in]."""
  out = dict(moments)
  for q in kernels:
    x = inputs[q].astype(jnp.float32)
    out[q] = moments[q] + jnp.where(on, jnp.outer(x, x), 0.0)
  return out


def stage_projectors(moments: dict, params, param_groups, modality: str, tau: float
                     ) -> dict[str, jax.Array]:
  """{kernel q of `modality`: P_nk ... P_n1} from the moments of its source kernels (identity where
  it has none): what q's gradient is multiplied by while `modality` trains."""
  sources = source_kernels(params, param_groups)
  shapes = input_shapes(params, param_groups)
  out = {}
  for q in kernels_of(params, param_groups, modality):
    p = jnp.eye(shapes[q][0], dtype=jnp.float32)
    for n in sources[q]:  # torch: grad @ P_n1 @ P_n2 ...; Flax kernel [in, out]: ... P_n2 P_n1 g
      p = projector(moments[n], tau) @ p
    out[q] = p
  return out


@optim.register("mie")
def mie(*, param_groups: dict[str, str], rho: float = 1e-10, flat_ratio: float = 0.0
        ) -> optax.GradientTransformationExtraArgs:
  """MIE/IGM gradient transform; see the module docstring. Needs `grad_fn`, `mie_modality`,
  `mie_projectors`."""
  names = sorted(param_groups)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, grad_fn, mie_modality, mie_projectors,
                **extra_args):
    del extra_args
    cur = jnp.asarray(mie_modality)
    # 1. flat-loss mix on the current modality's parameters.
    labels = mm.labels(updates, param_groups)
    weights = jax.tree_util.tree_map(
        lambda l: (cur == names.index(l)).astype(jnp.float32) if l in names else 0.0, labels)
    eps = sam_lib.perturbation(updates, weights, rho, "tensor")
    g_flat = sam_lib.sam_gradient(updates, params, grad_fn, eps, flat_ratio == 0)
    mixed = jax.tree_util.tree_map(
        lambda g, f: ((1 - flat_ratio) * g.astype(jnp.float32)
                      + flat_ratio * f.astype(jnp.float32)).astype(g.dtype), updates, g_flat)

    # 2. projection of the current modality's Dense-kernel gradients.
    def project(p, g):
      proj = mie_projectors.get(paths_lib.path_str(p))
      return g if proj is None else (proj @ g.astype(jnp.float32)).astype(g.dtype)
    return jax.tree_util.tree_map_with_path(project, mixed), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

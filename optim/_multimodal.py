"""Shared pieces of the multimodal-imbalance transforms: modality groups, step windows, RNG draws.

What each transform takes from the task's `tx_args` (besides the trainer's `step`, `rng`, `grad_fn`);
modality names are the keys of `param_groups` (sorted: audio before visual), each a path regex:
  ogm_ge    modality_logits {m: [B, C]}, labels [B] int32
  amss(+)   modality_logits, labels, and for variant="audio_visual" modality_features {m: [B, D]}
  agm       modality_logits (AGM's Shapley-style unimodal logits), labels, and for the exact hooks
            term_grads {m: gradient through the Shapley logit m} (task: agm_shapley)
  mmpareto  term_grads {m: grads of the unimodal loss L_m} (task: aux["grad_terms"] = {m: L_m})
  sam       nothing more (grad_fn)
  mie       mie_modality (int32 index), mie_projectors {Dense-kernel path: [d_in, d_in]} (optim/mie.py)

Epoch windows of the papers become step windows: with `steps_per_epoch = floor(N_train / batch)`
(drop_last, as every official loader here), the papers' inclusive epoch range `[e0, e1]` is
`start_step = e0 * steps_per_epoch`, `end_step = (e1 + 1) * steps_per_epoch` (exclusive); a negative
`end_step` means "never ends".
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from optim import paths


def modalities(param_groups: Mapping[str, str], logits: Mapping[str, Any]) -> list[str]:
  """Sorted names that are both a parameter group and a key of the task's `modality_logits`.

  Sorted because configs (ml_collections) and jit (pytree flattening) both sort dict keys: the
  official code's (audio, visual) order is the sorted one.
  """
  names = sorted(set(param_groups) & set(logits))
  if len(names) < 2:
    raise ValueError(f"need >= 2 modalities present in both param_groups {sorted(param_groups)} "
                     f"and modality_logits {sorted(logits)}")
  return names


def in_window(step, start_step: int, end_step: int):
  """Bool scalar: `start_step <= step < end_step` (end_step < 0: no end)."""
  step = jnp.asarray(step)
  return (step >= start_step) & ((jnp.asarray(end_step) < 0) | (step < end_step))


def split_draw(sample, rng: jax.Array, shapes: list[tuple[int, ...]]) -> list[jax.Array]:
  """Independent float32 draws of the given shapes from ONE sampler call (`sample(key, shape)`,
  e.g. `jax.random.normal`), sliced in order: one RNG kernel per step instead of one per tensor
  (far cheaper to compile and run). Deterministic in `rng`."""
  sizes = [int(np.prod(s)) for s in shapes]
  if not sizes:
    return []
  flat = sample(rng, (sum(sizes),), jnp.float32)
  out, at = [], 0
  for shape, n in zip(shapes, sizes):
    out.append(flat[at:at + n].reshape(shape))
    at += n
  return out


def labels(tree: Any, param_groups: Mapping[str, str]) -> Any:
  """Per-leaf group name (first matching regex of `param_groups`, else 'other')."""
  return paths.labels(tree, dict(param_groups))


def true_class_prob_sum(logits: jax.Array, labels_: jax.Array) -> jax.Array:
  """`s = sum_i softmax(logits)_i[y_i]` (OGM-GE main.py), float32."""
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(p, labels_[:, None].astype(jnp.int32), axis=-1).sum()

"""HeurVidQA's heuristic-matching loss [inferred] (Yu et al., arXiv 2410.09380;
models/heurvidqa.py).

`heuristic_kl(targets [B, E], logits [B, E], ignore_below)`: the mean over clips of
`KL(h || softmax(logits)) = sum_e h_e (log h_e - log_softmax(logits)_e)`, the prompter's heuristics
`h` as targets. Its gradient is that of ALPRO's soft-label cross-entropy
`-sum_e h_e log_softmax(logits)_e` (salesforce/ALPRO `src/modeling/alpro_models.py`,
`AlproForPretrain.compute_mpm_with_encoder_out`), which differs by the constant entropy of `h`.
Clips whose best heuristic is below `ignore_below` are left out, as ALPRO's prompter ignores its
uncertain pseudo-labels (threshold 0.2; `losses.videoqa.prompter_soft_labels` says why we compare
the probability, not ALPRO's index).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def heuristic_kl(targets, logits, ignore_below: float = 0.2):
  """Mean KL over the clips whose best heuristic is at least `ignore_below` (0 if none is)."""
  targets = targets.astype(jnp.float32)
  kl = optax.losses.kl_divergence(jax.nn.log_softmax(logits.astype(jnp.float32)), targets)
  keep = jnp.max(targets, axis=-1) >= ignore_below
  return jnp.sum(jnp.where(keep, kl, 0.0)) / jnp.maximum(jnp.sum(keep), 1)

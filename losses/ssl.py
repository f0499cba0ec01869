"""Semi-supervised losses: FreeMatch's self-adaptive threshold and fairness (Wang et al. 2023,
"FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning", Eqs. 6-11) and DSA's ensemble
pseudo-label, count-threshold schedule and max-correlation term (Qi2019KB/DSA:
`comm/classification/criteria.py`, `comm/classification/business.py`, `comm/schedule.py`).

Per head, FreeMatch keeps `tau` (scalar), `p` [K] and `hist` [K], initialised to 1/K, uniform,
uniform. All functions take arrays and return arrays; none reads labels of unlabeled data.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def freematch_init(num_classes: int, heads: int = 1) -> dict[str, jax.Array]:
  """tau = 1/K, p = hist = uniform, one row per head."""
  uniform = lambda: jnp.full((heads, num_classes), 1.0 / num_classes, jnp.float32)  # noqa: E731
  return {"tau": jnp.full((heads,), 1.0 / num_classes, jnp.float32), "p": uniform(),
          "hist": uniform()}  # distinct buffers: the train step donates its state


def freematch_update(logits_w: jax.Array, tau, p, hist, decay: float):
  """The EMA updates on the weak-view probabilities q = softmax(logits_w) [B, K] (Eqs. 6, 7):
  tau <- d tau + (1-d) mean_b max_c q;  p <- d p + (1-d) mean_b q;
  hist <- d hist + (1-d) normalised bincount(argmax q)."""
  q = jax.nn.softmax(jax.lax.stop_gradient(logits_w), axis=-1)
  k = q.shape[-1]
  counts = jnp.sum(jax.nn.one_hot(jnp.argmax(q, -1), k, dtype=q.dtype), axis=0)
  tau = decay * tau + (1 - decay) * jnp.mean(jnp.max(q, -1))
  p = decay * p + (1 - decay) * jnp.mean(q, axis=0)
  hist = decay * hist + (1 - decay) * counts / jnp.sum(counts)
  return tau, p, hist


def freematch_mask(logits_w: jax.Array, tau, p, alpha: float = 1.0):
  """(mask [B] float, pseudo-labels [B]): max_c q_b >= alpha * tau * p[argmax q_b] / max p
  (Eq. 8 with the state already updated on this batch, as the code does; DSA's `taut_alpha`
  = 0.9, FreeMatch's 1)."""
  q = jax.nn.softmax(jax.lax.stop_gradient(logits_w), axis=-1)
  conf, pseudo = jnp.max(q, -1), jnp.argmax(q, -1)
  local = p / jnp.max(p)
  return (conf >= alpha * tau * local[pseudo]).astype(q.dtype), pseudo


def _sum_norm(x):
  return x / jnp.sum(x, axis=-1, keepdims=True)


def fairness_loss(mask: jax.Array, logits_s: jax.Array, p, hist) -> jax.Array:
  """FreeMatch's self-adaptive fairness term (Eqs. 9-11, the public code's sign):
  sum_c r_c log(r_s,c + 1e-9) with r = SumNorm(p / hist) and r_s = SumNorm(mean(Q_s) / h_s), where
  Q_s are the strong-view probabilities of the masked samples and h_s the normalised histogram of
  their argmax (1/0 -> 0). With no masked sample the code's value is NaN; here it is 0."""
  probs = jax.nn.softmax(logits_s, axis=-1)
  k = probs.shape[-1]
  n = jnp.sum(mask)
  counts = jnp.sum(mask[:, None] * jax.nn.one_hot(jnp.argmax(probs, -1), k, dtype=probs.dtype), 0)
  h_s = counts / jnp.maximum(n, 1)
  inv = lambda h: jnp.where(h > 0, 1.0 / jnp.where(h > 0, h, 1.0), 0.0)  # noqa: E731
  r = _sum_norm(p * jax.lax.stop_gradient(inv(hist)))
  mean_s = jnp.sum(mask[:, None] * probs, 0) / jnp.maximum(n, 1)
  r_s = _sum_norm(mean_s * jax.lax.stop_gradient(inv(h_s)))
  return jnp.where(n > 0, jnp.sum(r * jnp.log(r_s + 1e-9)), 0.0)


def count_threshold(epoch, low: int = 2, high: int = 4, rampup: int = 50):
  """How many confident heads a pseudo-label needs at `epoch` (`count_thr_update`, 'Increase'):
  int(low + (high - low) min((epoch + 1) / rampup, 1))."""
  frac = jnp.minimum((jnp.asarray(epoch, jnp.float32) + 1) / rampup, 1.0)
  return jnp.floor(low + (high - low) * frac + 1e-6).astype(jnp.int32)


def ensemble_pseudo_labels(logits_w: jax.Array, masks: jax.Array, count_thr):
  """DSA's ensemble target (`target_ensemble_mask`) from weak logits [S, B, K] and per-head
  FreeMatch masks [S, B]: t_b = argmax_c sum_s softmax(logits_w^s)_bc (the code divides by the
  number of confident heads, which leaves the argmax unchanged, and gives class 0 where no head is
  confident); keep_b = [sum_s m_b^s >= count_thr]. Returns (targets [B], keep [B] float)."""
  q = jax.nn.softmax(jax.lax.stop_gradient(logits_w), axis=-1)
  count = jnp.sum(masks, axis=0)
  targets = jnp.where(count > 0, jnp.argmax(jnp.sum(q, 0), -1), 0)
  return targets, (count >= count_thr).astype(q.dtype)


def max_correlation(logits_x: jax.Array, labels: jax.Array) -> jax.Array:
  """Pearson correlation between a = softmax(logits_x)_{b, y_b} (y_b + 1) and y_b + 1 over the
  labeled batch (`corrcoef_labeled`); NaN when either is constant (the code then skips the head)."""
  y = labels.astype(jnp.float32) + 1
  probs = jax.nn.softmax(logits_x, axis=-1)
  a = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0] * y
  a, y = a - jnp.mean(a), y - jnp.mean(y)
  return jnp.sum(a * y) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(y * y))


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, keep: jax.Array) -> jax.Array:
  """mean_b keep_b CE(logits_b, t_b), averaged over all B samples (`ConsistencyLoss`)."""
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[:, None], axis=-1)[:, 0]
  return jnp.mean(ce * keep)

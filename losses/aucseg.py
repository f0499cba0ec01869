"""AUCSeg's pixel-level AUC loss (Han et al., "AUCSeg: AUC-oriented Pixel-level Long-tail Semantic
Segmentation", NeurIPS 2024, arXiv 2409.20398, Sec. 4.1, Eq. 4-5; official boyuh/AUCSeg
`mmseg/models/losses/auc_loss.py`, `AUCLoss` and its `SquareAUCLoss` / `ExpAUCLoss` /
`HingeAUCLoss`).

All labelled pixels of the batch form one set (label `ignore_index` dropped). Scores are one sigmoid
per class, `s_p(i) = sigmoid(logit_p(i))`. With N_c the number of pixels of class c and K_b the
number of classes present, the one-vs-one (`ovo`) loss is

    L = 1 / (K_b (K_b - 1)) sum_{i: N_i > 0} sum_{p: y_p = i} sum_{n: y_n != i}
        w_pn l(s_p(i) - s_n(i)),        w_pn = 1 / (N_i N_{y_n})

and the one-vs-all (`ova`) loss has factor 1 and `w_pn = 1 / (N_i (n - N_i))`. Surrogates:
square `l(t) = (gamma - t)^2 / 2` (every config of the paper) and exponential
`l(t) = exp(-gamma t)`. The code's "hinge" is linear without the max(0, .) and its negative term
carries an extra 1/N_i: `fac * gamma - fac / N_i sum_p s_p(i) + sum_n w_pn s_n(i)` with
fac = K_b - 1 (ovo) or 1 (ova); it is reproduced as coded.

Every surrogate is evaluated in O(n K) without forming pairs, as the official code does: with
`d = s(i) - gamma 1[y = i]` and `v_n = N_i w_pn` (independent of p; sum_n v_n = K_b - 1 for ovo),
`sum_pn w_pn (gamma - s_p + s_n)^2 / 2 = [sum_n v_n / N_i sum_p d_p^2 + sum_n v_n d_n^2] / 2
- (sum_n w_pn d_n)(sum_p d_p)`.

A batch with fewer than two present classes gives 0 (the official code divides by K_b (K_b - 1) = 0
and returns NaN).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SURROGATES = ("square", "exp", "hinge")
TRANSFORMS = ("ovo", "ova")


def auc_loss(logits: jax.Array, labels: jax.Array, *, surrogate: str = "square",
             transform: str = "ovo", gamma: float = 1.0, ignore_index: int = 255) -> jax.Array:
  """The pixel-level AUC loss (module docstring) of `logits [..., K]` (channel last) against
  `labels [...]` (int, `ignore_index` for unlabelled pixels). Returns a float32 scalar."""
  if surrogate not in SURROGATES or transform not in TRANSFORMS:
    raise ValueError(f"surrogate must be one of {SURROGATES} and transform one of {TRANSFORMS}, "
                     f"got {surrogate!r}, {transform!r}")
  k = logits.shape[-1]
  s = jax.nn.sigmoid(logits.reshape(-1, k).astype(jnp.float32))
  labels = labels.reshape(-1)
  valid = (labels != ignore_index).astype(jnp.float32)
  y = jax.nn.one_hot(labels, k, dtype=jnp.float32) * valid[:, None]  # [n, K], 0 on ignored
  counts = y.sum(0)  # N_c
  present = counts > 0
  num_present = present.sum()
  inv_n = jnp.where(present, 1.0 / jnp.maximum(counts, 1.0), 0.0)  # 1 / N_i
  if transform == "ovo":
    inv_n_label = (y * inv_n).sum(-1)                                   # 1 / N_{y_n}, 0 if ignored
    v = (1.0 - y) * inv_n_label[:, None]                                # w_pn = v_n / N_i
    fac, factor = num_present - 1.0, num_present * (num_present - 1.0)
  else:
    v = (1.0 - y) * valid[:, None] / jnp.maximum(valid.sum() - counts, 1.0)
    fac, factor = 1.0, 1.0
  w_neg = v * inv_n  # w_pn per negative n, [n, K]
  if surrogate == "square":
    d = s - gamma * y
    a = (fac * y * inv_n + v) * d * d  # the official S * diff^2
    per_class = 0.5 * a.sum(0) - (w_neg * d).sum(0) * (y * d).sum(0)
  elif surrogate == "exp":
    per_class = (y * jnp.exp(-gamma * s)).sum(0) * (w_neg * jnp.exp(gamma * s)).sum(0)
  else:
    per_class = fac * gamma - (fac * inv_n * y * s).sum(0) + (w_neg * s).sum(0)
  total = jnp.sum(jnp.where(present, per_class, 0.0))
  return jnp.where(num_present > 1, total / jnp.maximum(factor, 1.0), 0.0)

"""Loss-side baselines for modality imbalance, one small pure function each.

- PMR (Fan et al., "PMR: Prototypical Modal Rebalance for Multimodal Learning", CVPR 2023, Eqs. 3-9;
  official code fanyunfeng-bit/Modal-Imbalance-PMR, main_Prototype_grad.py): class prototypes per
  modality (class means of the features, blended with the previous ones `(1 - m) new + m old`, m = 0.2),
  prototype logits `-||phi - c_k||` (the code's `EU_dist`, a plain Euclidean distance; the paper's
  squared form is `squared=True`), and the prototypical CE added with weight alpha to the slower
  modality only: `rho = s_a / s_v` from prototype scores `s_u = sum_i softmax(-d_u)_i[y_i]`; rho > 1
  regularises v, rho < 1 regularises a, rho == 1 neither.
- G-Blending (Wang, Tran, Feiszli, "What Makes Training Multi-Modal Classification Networks Hard?",
  CVPR 2020, Eqs. 4-6): per output head k (each modality and the fusion) the overfitting-to-
  generalisation ratio from losses measured at two checkpoints N and N+n (a "super-epoch"):
  `dG = L*_N - L*_{N+n}` (validation loss drop), `dO = O_{N+n} - O_N` with `O = L* - L` (validation
  minus train loss); weights `w_k = dG_k / dO_k^2` normalised to sum 1; loss `sum_k w_k L_k`.
- UMT (Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal Learning", ICML 2023):
  `CE(fused) + weight * sum_m MSE(phi_m, phi_m^teacher)`, teachers frozen unimodal models, weight 10.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp


def class_prototypes(features: jax.Array, labels: jax.Array, num_classes: int,
                     old: jax.Array | None = None, momentum: float = 0.2) -> jax.Array:
  """[C, D] class means of `features` [N, D]; blended `(1 - momentum) * new + momentum * old` when
  `old` is given (PMR `calculate_prototype`). A class absent from `labels` keeps `old` (or 0)."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  counts = onehot.sum(0)
  sums = onehot.T @ features.astype(jnp.float32)
  new = sums / jnp.where(counts > 0, counts, 1.0)[:, None]
  if old is None:
    return new
  blended = (1 - momentum) * new + momentum * old
  return jnp.where((counts > 0)[:, None], blended, old)


def prototype_logits(features: jax.Array, prototypes: jax.Array, squared: bool = False) -> jax.Array:
  """[B, C] = -||phi_i - c_k|| (or its square): PMR's prototype similarity."""
  d2 = jnp.sum(jnp.square(features[:, None, :].astype(jnp.float32) - prototypes[None]), -1)
  return -d2 if squared else -jnp.sqrt(d2)


def pmr_regularizer(features: Mapping[str, jax.Array], prototypes: Mapping[str, jax.Array],
                    labels: jax.Array, alpha: float = 1.0, squared: bool = False
                    ) -> tuple[jax.Array, jax.Array]:
  """(alpha * PCE of the slower modality, [beta_a, lambda_v]) for two modalities (sorted names)."""
  a, v = sorted(features)
  logits = {m: prototype_logits(features[m], prototypes[m], squared) for m in (a, v)}
  y = labels[:, None].astype(jnp.int32)
  logp = {m: jax.nn.log_softmax(logits[m]) for m in (a, v)}
  score = {m: jnp.sum(jnp.exp(jnp.take_along_axis(logp[m], y, -1))) for m in (a, v)}
  pce = {m: -jnp.mean(jnp.take_along_axis(logp[m], y, -1)) for m in (a, v)}
  rho = jax.lax.stop_gradient(score[a] / score[v])
  coef = jnp.stack([jnp.where(rho < 1, alpha, 0.0), jnp.where(rho > 1, alpha, 0.0)])
  return coef[0] * pce[a] + coef[1] * pce[v], coef


def gblend_weights(train_n: jax.Array, val_n: jax.Array, train_next: jax.Array,
                   val_next: jax.Array) -> jax.Array:
  """G-Blending weights [K] from per-head losses at checkpoints N and N+n (Eq. 6, normalised):
  `w_k ~ G_k / O_k^2` with `G = L_val(N) - L_val(N+n)` and `O = gap(N+n) - gap(N)`, gap = val - train.

  A head that did not generalise (G <= 0) or whose ratio is not finite gets weight 0; when no head
  has a positive weight all weights are 0 (the caller keeps its previous weights).
  """
  d_g = val_n - val_next
  d_o = (val_next - train_next) - (val_n - train_n)
  w = d_g / jnp.square(d_o)
  w = jnp.where(jnp.isfinite(w), jnp.maximum(w, 0.0), 0.0)
  total = jnp.sum(w)
  return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0)


def gblend_loss(losses: jax.Array, weights: jax.Array) -> jax.Array:
  """`sum_k w_k L_k` over the K heads (modalities and fusion)."""
  return jnp.sum(jax.lax.stop_gradient(weights) * losses)


def umt_loss(fused_ce: jax.Array, features: Mapping[str, jax.Array],
             teacher_features: Mapping[str, jax.Array], weight: float = 10.0) -> jax.Array:
  """`CE + weight * sum_m mean((phi_m - stop_grad(teacher_m))^2)`."""
  mse = sum(jnp.mean(jnp.square(features[m].astype(jnp.float32)
                                - jax.lax.stop_gradient(teacher_features[m]).astype(jnp.float32)))
            for m in sorted(features))
  return fused_ce + weight * mse

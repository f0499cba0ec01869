"""Classification losses and batch-level label mixing (pure functions).

- Softmax cross-entropy, in float32 whatever the logits' dtype: `optax.softmax_cross_entropy`
  (soft targets) and `optax.softmax_cross_entropy_with_integer_labels` (labels). Label smoothing
  (Szegedy et al. 2016, Sec. 7, q = (1 - eps) onehot(y) + eps / C) is `optax.smooth_labels`.
- Mixup (Zhang et al. 2018, Eq. 1): x~ = lam x_i + (1 - lam) x_j, y~ likewise, lam ~ Beta(a, a);
  partner j = the batch reversed (timm's convention) or a random permutation (MIE's code).
- CutMix (Yun et al. 2019, Eq. 1-2): paste a box of area (1 - lam) from x_j; lam is recomputed
  from the pasted area. Partner j is the batch reversed (timm's convention).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """[B] -sum_c targets_c log softmax(logits)_c, computed in float32."""
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B] -log softmax(logits)[y], computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def mix_targets(targets: jax.Array, lam: jax.Array) -> jax.Array:
  """lam * y_i + (1 - lam) * y_j with partner j = the batch reversed."""
  return lam * targets + (1.0 - lam) * targets[::-1]


def mixup(rng: jax.Array, x: jax.Array, alpha: float, permute: bool = False
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(lam x + (1 - lam) x[partner], lam, partner), lam ~ Beta(alpha, alpha); partner is the batch
  reversed (mix the targets with `mix_targets(targets, lam)`) or, with `permute`, a random
  permutation drawn from a second key."""
  if permute:
    rng, k_perm = jax.random.split(rng)
    partner = jax.random.permutation(k_perm, x.shape[0])
  else:
    partner = jnp.arange(x.shape[0])[::-1]
  lam = jax.random.beta(rng, alpha, alpha)
  return (lam * x + (1.0 - lam) * x[partner]).astype(x.dtype), lam, partner


def cutmix(rng: jax.Array, images: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
  """Returns (images with a partner's box pasted in, lam = 1 - box area / image area)."""
  k_lam, k_y, k_x = jax.random.split(rng, 3)
  lam = jax.random.beta(k_lam, alpha, alpha)
  h, w = images.shape[1], images.shape[2]
  cut_h = jnp.round(h * jnp.sqrt(1.0 - lam)).astype(jnp.int32)
  cut_w = jnp.round(w * jnp.sqrt(1.0 - lam)).astype(jnp.int32)
  cy = jax.random.randint(k_y, [], 0, h)
  cx = jax.random.randint(k_x, [], 0, w)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
  mixed = jnp.where(box[None, :, :, None], images[::-1], images)
  return mixed, 1.0 - box.sum() / (h * w)

"""AUCSeg's pixel-level AUC loss: the official code (fixture: loss and gradient, ignore pixels and
an absent class) and the pairwise definition (NumPy brute force over every positive/negative
pair)."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses import aucseg

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "aucseg", "auc.npz")


@pytest.mark.parametrize("surrogate", aucseg.SURROGATES)
@pytest.mark.parametrize("transform", aucseg.TRANSFORMS)
def test_auc_loss_matches_official(surrogate, transform):
  f = np.load(FIXTURE)
  logits = jnp.asarray(f["logits"].transpose(0, 2, 3, 1))  # official NCHW -> ours NHWC
  loss, grad = jax.value_and_grad(lambda x: aucseg.auc_loss(
      x, jnp.asarray(f["labels"]), surrogate=surrogate, transform=transform))(logits)
  np.testing.assert_allclose(loss, f[f"{surrogate}_{transform}_loss"], rtol=1e-5)
  np.testing.assert_allclose(grad, f[f"{surrogate}_{transform}_grad"].transpose(0, 2, 3, 1),
                             atol=1e-6)


def _pairwise(logits, labels, surrogate, transform, gamma=1.0):
  s = 1 / (1 + np.exp(-logits.reshape(-1, logits.shape[-1]).astype(np.float64)))
  y = labels.ravel()
  s, y = s[y != 255], y[y != 255]
  counts = np.bincount(y, minlength=s.shape[1])
  present = np.flatnonzero(counts)
  total = 0.0
  for i in present:
    for p in np.flatnonzero(y == i):
      for n in np.flatnonzero(y != i):
        w = 1 / (counts[i] * (counts[y[n]] if transform == "ovo" else len(y) - counts[i]))
        t = s[p, i] - s[n, i]
        total += w * (0.5 * (gamma - t) ** 2 if surrogate == "square" else np.exp(-gamma * t))
  k = len(present)
  return total / (k * (k - 1)) if transform == "ovo" else total


@pytest.mark.parametrize("surrogate", ["square", "exp"])
@pytest.mark.parametrize("transform", aucseg.TRANSFORMS)
def test_auc_loss_fast_form_equals_pairwise_definition(surrogate, transform):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 6, 5)).astype(np.float32)
  labels = rng.choice([0, 1, 3, 4, 255], size=(2, 5, 6), p=[0.4, 0.25, 0.1, 0.1, 0.15])
  ours = aucseg.auc_loss(jnp.asarray(logits), jnp.asarray(labels), surrogate=surrogate,
                         transform=transform, gamma=0.7 if surrogate == "exp" else 1.0)
  ref = _pairwise(logits, labels, surrogate, transform, gamma=0.7 if surrogate == "exp" else 1.0)
  np.testing.assert_allclose(ours, ref, rtol=2e-5)


def test_single_class_batch_gives_zero_not_nan():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), jnp.float32)
  labels = jnp.full((1, 4, 4), 2).at[0, 0].set(255)
  loss, grad = jax.value_and_grad(lambda x: aucseg.auc_loss(x, labels))(logits)
  assert float(loss) == 0.0 and np.all(np.asarray(grad) == 0)

"""Re-ID metric losses against the official SGIEL code (fixture) and a brute-force NumPy loop."""
from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np

from losses import metric_learning

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "sgiel")


def test_batch_hard_triplet_matches_official_loss_and_gradient():
  f = np.load(os.path.join(FIXTURES, "triplet.npz"))
  x, y = jnp.asarray(f["features"], jnp.float32), jnp.asarray(f["labels"])
  (loss, correct), grad = jax.value_and_grad(
      lambda x: metric_learning.batch_hard_triplet(x, y, 0.3), has_aux=True)(x)
  np.testing.assert_allclose(loss, f["loss"], rtol=1e-5)
  assert int(correct) == int(f["correct"])
  np.testing.assert_allclose(grad, f["grad"], atol=2e-5)


def test_batch_hard_triplet_equals_hardest_of_all_triplets():
  """Per anchor, the batch-hard term is the largest hinge over every (positive, negative) pair."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(9, 5)).astype(np.float32)
  y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  terms = []
  for a in range(len(x)):
    pos = [p for p in range(len(x)) if y[p] == y[a]]
    neg = [n for n in range(len(x)) if y[n] != y[a]]
    terms.append(max(max(0.0, d[a, p] - d[a, n] + 0.3) for p, n in itertools.product(pos, neg)))
  loss, _ = metric_learning.batch_hard_triplet(jnp.asarray(x), jnp.asarray(y), 0.3)
  np.testing.assert_allclose(loss, np.mean(terms), rtol=1e-5)

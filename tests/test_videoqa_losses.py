"""Video-QA losses (losses/videoqa.py) against NumPy loops written from the equations."""
from __future__ import annotations

import numpy as np

from losses import videoqa


def _norm(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_late_interaction_equals_a_loop_over_pairs_with_padding():
  rng = np.random.default_rng(0)
  v, q = rng.normal(size=(3, 4, 5)), rng.normal(size=(2, 6, 5))
  vm = np.arange(4)[None] < np.array([4, 2, 3])[:, None]
  qm = np.arange(6)[None] < np.array([6, 1])[:, None]
  got = np.asarray(videoqa.late_interaction(v, q, vm, qm))
  want = np.zeros((3, 2))
  for a in range(3):
    for b in range(2):
      va, qb = _norm(v[a][vm[a]]), _norm(q[b][qm[b]])
      s = va @ qb.T
      want[a, b] = 0.5 * (s.max(axis=1).mean() + s.max(axis=0).mean())
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_answer_cross_entropy_with_smoothing_by_hand():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 7))
  targets = rng.integers(0, 7, size=(2, 3))
  mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
  eps = 0.1
  total = 0.0
  for b, t in zip(*np.nonzero(mask)):
    logp = logits[b, t] - np.log(np.exp(logits[b, t]).sum())
    q = np.full(7, eps / 7)
    q[targets[b, t]] += 1 - eps
    total += -(q * logp).sum()
  got = float(videoqa.answer_cross_entropy(logits, targets, mask, smoothing=eps))
  np.testing.assert_allclose(got, total / 3, rtol=1e-5)

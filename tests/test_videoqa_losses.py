"""Video-QA losses (losses/videoqa.py) against NumPy loops written from the equations."""
from __future__ import annotations

import os

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


def test_prompter_soft_labels_equal_alpro_prompter():
  """Fixture: ALPRO's `Prompter.build_text_prompts` / `get_pseudo_labels` run on fixed [CLS]
  states and visual features (tests/fixtures/videoqa/make_fixtures.py)."""
  d = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "videoqa", "prompter.npz"))
  projected = _norm(d["cls"] @ d["proj_kernel"] + d["proj_bias"])
  prompts = np.asarray(videoqa.template_average(projected, templates=3))
  np.testing.assert_allclose(prompts, d["prompt_feat"], rtol=1e-5, atol=1e-6)
  soft, ignore = videoqa.prompter_soft_labels(d["video_feat"], prompts, d["temp"])
  np.testing.assert_allclose(np.asarray(soft), d["soft_labels"], rtol=1e-5, atol=1e-7)
  # Ours ignores the near-uniform video (best probability 0.125); ALPRO's index comparison
  # ignores the confident video whose best entity happens to be entity 0 instead.
  np.testing.assert_array_equal(np.asarray(ignore), [False, True, False, False])
  np.testing.assert_array_equal(d["code_ignore"], [False, False, True, False])

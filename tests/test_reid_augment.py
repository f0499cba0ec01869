"""SGIEL's channel augmentations (`data.augment`, `data.reid`): each op with a seeded generator
equals the official op (jiawei151/SGIEL_VIReID `ChannelAug.py`, `data_loader.py`) run with Python's
`random` drawing from the same generator (fixture), and the probabilities and limits hold."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ml_pipelines.data import augment
from ml_pipelines.data import reid as reid_data

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "sgiel", "augment.npz")
OPS = {"erasing": augment.random_erasing, "exchange": augment.channel_exchange,
       "adapt_gray": augment.channel_adapt_gray, "visible": reid_data.augment_visible,
       "infrared": reid_data.augment_infrared}


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_equal_official_with_the_same_draws(name):
  ref = np.load(FIXTURE)
  changed = 0
  for seed, img, want in zip(ref["seeds"], ref["images"], ref[name]):
    got = OPS[name](img.copy(), np.random.default_rng(int(seed)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    changed += not np.array_equal(got, img)
  assert changed > 0


def test_erasing_probability_and_rectangle_limits():
  """Erased in about half the draws; the rectangle's area is 2-40% of the image (up to rounding of
  its sides), its aspect within [0.3, 1/0.3] (idem), and it holds the fill in every channel."""
  img = np.full((48, 24, 3), 9.0, np.float32)
  rng = np.random.default_rng(0)
  erased, n = 0, 2000
  for _ in range(n):
    out = augment.random_erasing(img, rng)
    hit = np.all(out != 9.0, axis=-1)
    if not hit.any():
      continue
    erased += 1
    rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
    h, w = len(rows), len(cols)
    assert hit.sum() == h * w and h < 48 and w < 24  # one full rectangle
    np.testing.assert_allclose(out[hit], np.broadcast_to(augment.CIFAR_MEAN, (h * w, 3)),
                               rtol=1e-6)
    assert 0.02 * 48 * 24 - (h + w) <= h * w <= 0.4 * 48 * 24 + (h + w) + 1
    assert 0.3 * (w - 1) <= h + 1 and h - 1 <= (w + 1) / 0.3
  assert abs(erased / n - 0.5) < 0.04


def test_channel_ops_frequencies():
  """Channel exchange: each of R, G, B copied in a third of the draws. ChannelAdapGray: each
  channel a quarter, luma an eighth, unchanged an eighth. Visible pipeline: exchange in half."""
  img = np.stack([np.full((4, 2), v, np.float32) for v in (1.0, 2.0, 3.0)], -1)
  luma = 0.2989 + 2 * 0.587 + 3 * 0.114
  rng = np.random.default_rng(1)
  n = 4000
  outcome = lambda out: (  # noqa: E731
      "same" if np.array_equal(out, img) else
      ("luma" if np.allclose(out, luma) else int(out[0, 0, 0])))
  ex = [outcome(augment.channel_exchange(img, rng)) for _ in range(n)]
  for c in (1, 2, 3):
    assert abs(ex.count(c) / n - 1 / 3) < 0.03
  gray = [outcome(augment.channel_adapt_gray(img, rng)) for _ in range(n)]
  for c, freq in ((1, 0.25), (2, 0.25), (3, 0.25), ("luma", 0.125), ("same", 0.125)):
    assert abs(gray.count(c) / n - freq) < 0.03
  vis = [np.all(out == out[..., :1]) for out in
         (reid_data.augment_visible(img, rng) for _ in range(n))]
  assert abs(np.mean(vis) - 0.5) < 0.03

"""SegNeXt's LightHamHead (`models.segmenter.LightHamHead`, `head="ham"`) against mmseg's
`LightHamHead` forward run unmodified on seeded weights (fixture `fixtures/aucseg/ham_head.npz`),
in eval mode (7 NMF steps, no dropout) and train mode (6 steps), given the code's random initial
bases; the NMF equals a NumPy loop of the multiplicative updates; the AUCSeg config's `ham` option
builds a segmenter with it."""
from __future__ import annotations

import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import convert
from models import segmenter

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, os.path.join(FIXTURES, "hashing"))
from seeded_weights import seeded_input, seeded_state_dict  # noqa: E402

LEVELS = ((8, 8), (16, 4), (24, 2))


def test_light_ham_head_matches_mmseg():
  ref = np.load(os.path.join(FIXTURES, "aucseg", "ham_head.npz"))
  with open(os.path.join(FIXTURES, "aucseg", "ham_head_shapes.json")) as f:
    shapes = json.load(f)
  head = segmenter.LightHamHead([c for c, _ in LEVELS], 5, channels=32, ham_channels=32, rank=4,
                                num_groups=8, rngs=nnx.Rngs(params=0, dropout=1))
  convert.load_into(head, seeded_state_dict(shapes, 0))
  feats = [jnp.asarray(seeded_input((2, c, s, s), 30 + i).transpose(0, 2, 3, 1))
           for i, (c, s) in enumerate(LEVELS)]
  def bases(draws):  # the code's `_build_bases`: F.normalize(torch.rand(...), dim=1)
    return jnp.asarray(draws / np.linalg.norm(draws, axis=1, keepdims=True))
  head.eval()
  np.testing.assert_allclose(head(feats, bases(ref["eval_bases"])), ref["eval"],
                             atol=2e-5, rtol=2e-5)
  head.train()
  head.dropout.deterministic = True  # the reference's train pass has dropout off
  np.testing.assert_allclose(head(feats, bases(ref["train_bases"])), ref["train"],
                             atol=2e-5, rtol=2e-5)
  assert not np.allclose(ref["eval"], ref["train"], atol=1e-3)  # 7 vs 6 steps matter


def test_nmf_equals_numpy_updates_and_segmenter_builds():
  rng = np.random.default_rng(0)
  x, bases = rng.uniform(size=(2, 12, 6)), rng.uniform(size=(2, 6, 3))
  coef = np.exp(x @ bases)
  coef /= coef.sum(-1, keepdims=True)
  b = bases.copy()
  for step in range(4):
    coef = coef * (x @ b) / (coef @ (b.transpose(0, 2, 1) @ b) + 1e-6)
    if step < 3:
      b = b * (x.transpose(0, 2, 1) @ coef) / (b @ (coef.transpose(0, 2, 1) @ coef) + 1e-6)
  got = segmenter.nmf2d(jnp.asarray(x), jnp.asarray(bases), 3)
  np.testing.assert_allclose(got, coef @ b.transpose(0, 2, 1), rtol=1e-5)
  from ml_pipelines.trainer import config as config_lib
  spec = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "segmentation",
                                      "aucseg.py") + ":digits,aucseg,ham").model.to_dict()
  out = nnx.eval_shape(lambda: models.build(spec)(jnp.ones((1, 48, 48, 3))))
  assert out.shape == (1, 6, 6, 11)  # stage 2's resolution (1/8)
  with pytest.raises(ValueError, match="head 'upernet' not in"):
    nnx.eval_shape(lambda: models.build({**spec, "head": "upernet", "ham": None}))

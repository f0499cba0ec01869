"""RCPMOD against the official 180400518/RCPMOD code in float64 (fixtures from
tests/fixtures/rcpmod/make_rcpmod_fixtures.py): the five losses, the kNN tables, the completion,
attribute, contrastive and fused scores; and the mismatched-views refusal."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from losses import outlier
from ml_pipelines.data import multiview
from models import rcpmod

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "rcpmod", "rcpmod_reference.npz"))


def test_the_five_losses_match_in_float64():
  with jax.enable_x64():
    r = {k: jnp.asarray(REF[k]) for k in ("h_i", "h_j", "m_i", "m_j", "ins", "pos", "neg", "x")}
    got = {"contrastive_loss": outlier.nt_xent(r["h_i"], r["h_j"]),
           "contrastive_loss_oa": outlier.nt_xent(r["h_i"], r["h_j"], memory=(r["m_i"], r["m_j"])),
           "contrastive_score": outlier.nt_xent_scores(r["h_i"], r["h_j"]),
           "triplet_loss": outlier.triplet(r["ins"], r["pos"], r["neg"]),
           "uniform_loss": outlier.spreading(r["x"])}
    for name, value in got.items():
      assert value.dtype == jnp.float64
      np.testing.assert_allclose(value, REF[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_knn_tables_match_get_knn_indices():
  mask = REF["mask"]
  k1, k2 = multiview.knn_tables(REF["x1"], REF["x2"], mask[:, 0] == 1, mask[:, 1] == 1, k=6)
  np.testing.assert_array_equal(k1, REF["knn1"])
  np.testing.assert_array_equal(k2, REF["knn2"])


def _load(model):
  for v, ae in enumerate(model.views):  # the fixture stores view v's state dict under "ae{v}/"
    ae.load_torch({k[len(f"ae{v}/"):]: REF[k] for k in REF.files if k.startswith(f"ae{v}/")})


def test_completion_and_scores_match_the_official_evaluation():
  with jax.enable_x64():
    model = models.build("rcpmod", archs=((5, 16, 4), (7, 16, 4)))
    state = nnx.state(model)
    nnx.update(model, jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), state))
    _load(model)
    x1, x2, mask = jnp.asarray(REF["x1"]), jnp.asarray(REF["x2"]), REF["mask"] == 1
    (r1, z1), (r2, z2) = model([x1, x2])
    rep1 = rcpmod.complete(model.views[0], z1, x1, REF["knn1"], mask[:, 0])
    rep2 = rcpmod.complete(model.views[1], z2, x2, REF["knn2"], mask[:, 1])
    np.testing.assert_allclose(rep1, REF["rep1"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rep2, REF["rep2"], rtol=1e-10, atol=1e-12)
    errors = [jnp.sum((r1 - x1) ** 2, 1), jnp.sum((r2 - x2) ** 2, 1)]
    attr = rcpmod.attribute_scores(errors, [mask[:, 0], mask[:, 1]])
    np.testing.assert_allclose(attr, REF["attr_scores"], rtol=1e-10, atol=1e-12)
    normed = [r / jnp.linalg.norm(r, axis=1, keepdims=True) for r in (rep1, rep2)]
    contr = outlier.nt_xent_scores(*normed)
    np.testing.assert_allclose(contr, REF["contr_scores"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rcpmod.fused_scores(attr, contr, 0.25), REF["final_scores"],
                               rtol=1e-10, atol=1e-12)


def test_views_with_different_sample_counts_are_refused():
  with pytest.raises(ValueError, match=r"sample counts differ \(view 0: 60, view 1: 59\)"):
    multiview.knn_tables(REF["x1"], REF["x2"][:59], REF["mask"][:, 0] == 1,
                         REF["mask"][:, 1] == 1)

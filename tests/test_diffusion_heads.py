"""The GATE pixel classifier and correspondence aggregator against the official modules in eval
mode (tests/fixtures/diffusion/make_head_fixtures.py), the symmetric loss, PCK, and the sparsity
heuristic."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from losses import diffusion as losses
from ml_pipelines.evaluators import correspondence
from models import convert

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "diffusion", "heads.npz"))


def _state(prefix):
  return {k[len(prefix) + 1:]: REF[k] for k in REF.files if k.startswith(prefix + "/")}


def test_pixel_classifier_equals_official_in_eval_mode():
  model = models.build("gate_pixel_classifier", num_classes=5, dim=6, ddpm_dim=4)
  convert.load_into(model, _state("pix"))
  model.eval()
  logits, neg_sparsity = model(jnp.asarray(REF["pix_x"]), jnp.asarray(REF["pix_ddpm"]))
  np.testing.assert_allclose(logits, REF["pix_logits"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(neg_sparsity, REF["pix_sparsity"], atol=1e-6)


@pytest.mark.parametrize("conv_out,key", [(True, "agg_out"), (False, "agg_out_noconv")])
def test_correspondence_aggregator_equals_official_in_eval_mode(conv_out, key):
  model = models.build("gate_correspondence", dim=5, attn_dim=2, conv_out=conv_out)
  convert.load_into(model, _state("agg"))
  model.eval()
  out, neg_sparsity = model(jnp.asarray(REF["agg_x"]), jnp.asarray(REF["agg_attn"]))
  np.testing.assert_allclose(out, REF[key], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(neg_sparsity, REF["agg_sparsity"], atol=1e-6)


def test_symmetric_loss_and_pck_equal_official():
  out = jnp.asarray(REF["agg_out"])
  ia = correspondence.points_to_idxs(REF["clip_src_pts"], (6, 6))
  ib = correspondence.points_to_idxs(REF["clip_tgt_pts"], (6, 6))
  loss = losses.symmetric_correspondence_loss(out[0], out[1], jnp.asarray(ia), jnp.asarray(ib))
  np.testing.assert_allclose(loss, REF["clip_loss"], rtol=1e-5)
  np.testing.assert_array_equal(
      correspondence.pck(REF["pck_pred"], REF["pck_gt"], image_size=(64, 48)), REF["pck_img"])
  np.testing.assert_array_equal(
      correspondence.pck(REF["pck_pred"], REF["pck_gt"], box=(5, 5, 45, 30)), REF["pck_box"])


def test_sparsity_term_has_the_size_of_the_ce_and_the_walk_moves_by_steps():
  ce, sp = jnp.float32(2.0), jnp.float32(-0.8)
  assert float(losses.with_sparsity(ce, sp, 0.5)) == pytest.approx(2.0 - 0.5 * 2.0)
  g = jax.grad(lambda s: losses.with_sparsity(ce, s, 0.5))(sp)
  assert float(g) == pytest.approx(0.5 * 2.0 / 0.8)  # only through L_sp, rescaled
  state = losses.sparsity_walk_init()
  weights = []
  for step in range(200):
    state = losses.sparsity_walk(state, jnp.float32(1.0 / (step + 1)), step,
                                 jax.random.key(step))
    weights.append(float(state["weight"]))
  w = np.asarray(weights)
  assert (w >= 0).all() and np.allclose(w[:4], 0)  # no move before the 5th iteration
  steps = np.round(np.diff(w[4::5]) / 1e-5)
  assert set(np.unique(steps)) <= {-2.0, -1.0, 0.0, 1.0, 2.0} and w.max() > 0


@pytest.mark.parametrize("fusion", ["concat", "gate"])
def test_segmentor_and_its_loss_equal_official_in_eval_mode(fusion):
  """GATE's `DiffusionSegmentor` (variants concatenated per level) and `DiffusionGateSegmentor`
  with mmseg's UPerHead / FCNHead (tests/fixtures/diffusion/make_segmentor_fixtures.py), random
  weights, eval mode: decode and auxiliary logits, and the decode loss CE + Lovasz + 0.4 aux CE."""
  from configs.diffusion import gate as gate_config
  from ml_pipelines.tasks.diffusion_heads import DiffusionSegmentationTask
  ref = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "diffusion", "segmentor.npz"))
  model = models.build("diffusion_segmentor", num_classes=5, layer_dims=((3,), (2, 2), (2,)),
                       variants=3, fusion=fusion, channels=4)
  convert.load_into(model, convert.load_state_dict(os.path.join(
      os.path.dirname(__file__), "fixtures", "diffusion", f"segmentor_{fusion}.safetensors")))
  model.eval()
  levels = [jnp.asarray(ref[f"x/{l}"]) for l in range(3)]
  task = DiffusionSegmentationTask(gate_config.get_config("seg_tiny:5"))
  batch = {f"level{l}": x for l, x in enumerate(levels)} | {"label": jnp.asarray(ref["labels"])}
  (logits, aux), (total, aux_out) = nnx.jit(lambda m, b: (
      m([b[f"level{l}"] for l in range(3)]), task.loss(m, b, None, None, 0)))(model, batch)
  np.testing.assert_allclose(logits, ref[f"{fusion}/logits"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(aux, ref[f"{fusion}/aux"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(aux_out["metrics"]["lovasz"], ref[f"{fusion}/lovasz"], rtol=1e-5)
  np.testing.assert_allclose(aux_out["metrics"]["ce"], ref[f"{fusion}/ce"], rtol=1e-5)
  np.testing.assert_allclose(total, ref[f"{fusion}/loss"], rtol=1e-5)


def test_poly_schedule_is_mmseg_poly_lr():
  """The segmentation configs' `schedule="poly"`: (lr - eta_min) (1 - t / T)^0.9 + eta_min."""
  import ml_collections
  from optim import chain
  c = ml_collections.ConfigDict(dict(learning_rate=1.6e-4, schedule="poly", power=0.9,
                                     end_factor=1e-4 / 1.6e-4, warmup_steps=0))
  fn = chain.schedule(c, 100)
  for t in (0, 10, 55, 100):
    want = (1.6e-4 - 1e-4) * (1 - t / 100) ** 0.9 + 1e-4
    assert float(fn(t)) == pytest.approx(want, rel=1e-5)

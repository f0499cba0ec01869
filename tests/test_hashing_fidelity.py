"""The deep-hashing methods against their authors' code, through fixtures made by running it
(tests/fixtures/hashing/make_fixtures.py; its docstring says how to get the code):

- SEMICON (aassxun/SEMICON `models/SEMICON.py`): parameter counts at 12/24/32/48 bits, and the
  official model's forward (ResNet-50, seeded random weights, eval mode, 2x3x64x64) reproduced by
  ours on the same weights imported through `semicon_from_torch`;
- ExchNet losses against the reimplementation by SEMICON's authors (aassxun/DSH_Analysis
  `models/exchnet_loss.py`).
"""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from losses import hashing as hl
from models import convert
from models import hashing as mh

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hashing")


def _seeded():
  spec = importlib.util.spec_from_file_location(
      "seeded_weights", os.path.join(FIXTURES, "seeded_weights.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _semicon_fixture():
  with open(os.path.join(FIXTURES, "semicon.json")) as f:
    meta = json.load(f)
  return meta, dict(np.load(os.path.join(FIXTURES, "semicon.npz")))


def _param_count(model):
  return sum(int(np.prod(v.shape)) for _, v in nnx.state(model, nnx.Param).flat_state())


def test_semicon_parameter_counts_equal_official():
  meta, _ = _semicon_fixture()
  for bits in (12, 24, 32, 48):
    model = nnx.eval_shape(lambda: models.build("semicon", bits=bits))
    assert _param_count(model) == meta["param_counts"][str(bits)], bits
  assert _param_count(model.sem) == meta["param_counts"]["sem"]


def test_semicon_forward_matches_official():
  """Official weights through `semicon_from_torch` + `convert.load_into` (every key used, every
  shape checked), then our forward equals the official one: codes, SEM maps, pooled features, in
  eval mode and in training mode."""
  meta, ref = _semicon_fixture()
  seeded = _seeded()
  state_dict = seeded.seeded_state_dict(meta["manifest"], meta["seed"])
  state_dict["trunk_like.bn1.num_batches_tracked"] = np.zeros((), np.int64)
  params, rest = mh.semicon_from_torch(state_dict)
  assert list(rest) == ["trunk_like.bn1.num_batches_tracked"]
  model = nnx.eval_shape(lambda: models.build("semicon", bits=12))
  # The `init_from` converter pairs every variable with an official key, nothing left over.
  variables = {"/".join(map(str, p)): v for p, v in
               nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)).flat_state()}
  found = convert.match(variables, state_dict, convert.get("semicon"))
  assert not found.problems and len(found.arrays) == len(variables), found.problems
  convert.load_into(model, params)
  model.eval()
  x = seeded.seeded_input(tuple(meta["input_shape"]), meta["seed"]).transpose(0, 2, 3, 1)
  out = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(out["attention"]), ref["attention"].transpose(0, 2, 3, 1),
                             atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(out["global_feature"]), ref["global_feature"], atol=1e-5,
                             rtol=0)
  np.testing.assert_allclose(np.asarray(out["local_features"]), ref["local_features"], atol=1e-5,
                             rtol=0)
  np.testing.assert_allclose(np.asarray(out["code"]), ref["code"], atol=1e-5, rtol=0)
  # Training mode: batch statistics, one local-branch call (and its own statistics) per SEM map.
  # Batch norm over 8 values per channel is ill-conditioned: the reference is the official float64
  # run, and float32 may be off it by a few times the official float32 run's own error (2e-3 for
  # the local features; pooling the three maps' statistics would be off by 1.0).
  model.train()
  out = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
  for key in ("local_features", "code"):
    err = np.abs(np.asarray(out[key], np.float64) - ref[f"train_{key}"]).max()
    assert err <= 3 * ref[f"train_{key}_float32_error"], (key, err)


def test_exchnet_losses_match_reference():
  """Each term of the reference `Exch_Loss` (aligning on; without and with the quantization term)
  from our loss functions as the exchnet task combines them."""
  d = dict(np.load(os.path.join(FIXTURES, "exchnet.npz")))
  b, c = d["f"].shape

  @jax.jit
  def terms(d):
    n = d["v"].shape[0]
    v_batch = d["v"][d["omega"]]
    hash_only = hl.adsh_loss(d["f"], d["v"], d["s"], v_batch, 0.0, n, 12.0 / c)
    with_quant = hl.adsh_loss(d["f"], d["v"], d["s"], v_batch, 200.0, n, 12.0 / c)
    # the reference takes the spatial distributions; softmax_HW(log p) = p, one channel
    sp = hl.spatial_diversity_loss(jnp.log(d["sp_v"]).reshape(*d["sp_v"].shape[:2], 3, 3, 1)) / b
    ch = hl.channel_diversity_loss(d["local"]) / b
    align = hl.alignment_loss(d["local"], d["anchors"], jnp.arange(b))
    return {"hash": hash_only, "quant": with_quant - hash_only, "sp": sp, "ch": ch,
            "align": align, "loss_quant0": hash_only + sp + ch + align,
            "loss_quant1": with_quant + sp + ch + align}

  ours = terms(d)
  for key, value in ours.items():
    np.testing.assert_allclose(float(value), float(np.squeeze(d[key])), rtol=1e-5, err_msg=key)
  align = ours["align"]
  per_example = hl.alignment_loss(d["local"], d["anchors"], jnp.arange(b), norm="per_example")
  assert float(per_example) > float(align) * 1.5  # the other variant is a different quantity

"""DSA and FreeMatch against the official code (Qi2019KB/DSA), on the outputs it computed
(tests/fixtures/dsa/make_fixtures.py): stream features with noise off, the FreeMatch threshold and
fairness updates, the ensemble pseudo-labels and mask, the max-correlation term, the count
threshold schedule. Tolerance 1e-5 relative."""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from losses import ssl
from models import dsa

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "dsa")
sys.path.insert(0, HERE)
from make_fixtures import CHANNELS, STREAMS, WIDTHS, stream_weights  # noqa: E402


@pytest.fixture(scope="module")
def fx():
  return dict(np.load(os.path.join(HERE, "dsa.npz")))


def _close(ours, theirs, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(ours), theirs, rtol=rtol, atol=atol)


def test_stream_features_match_official(fx):
  # Built abstractly (drawing 11M random weights eagerly takes a minute), then every variable the
  # stream features read is set: the fixture's weights and PReLU's initial slope 0.25.
  head = nnx.eval_shape(lambda: dsa.MultiHead(
      CHANNELS, 10, stream_num=STREAMS, split_factor=0.1, adapter_widths=WIDTHS, noise_factor=0.0,
      rngs=nnx.Rngs(params=0, noise=1)))
  convs = [head.pre] + [layer for adapter in head.adapters for layer in adapter.layers]
  weights = stream_weights(0)
  assert len(convs) == len(weights)
  for conv, (w, b) in zip(convs, weights):
    assert conv.kernel.shape == w.shape
    conv.kernel.set_value(jnp.asarray(w))
    conv.bias.set_value(jnp.asarray(b))
  for act in head.adapters[2].acts:
    act.slope.set_value(jnp.float32(0.25))
  head.eval()  # RReLU at its mean slope, as the fixture's adapters in eval mode
  for act in head.adapters[3].acts:  # the official default keeps RReLU random: turn that off
    act.stochastic = False
  x = np.transpose(fx["stream_input"], (0, 2, 3, 1))
  ours = np.transpose(np.asarray(head.stream_features(jnp.asarray(x))), (0, 1, 4, 2, 3))
  _close(ours, fx["stream_features"], atol=1e-5)


def test_freematch_state_mask_and_fairness_match_official(fx):
  upd = jax.vmap(ssl.freematch_update, in_axes=(0, 0, 0, 0, None))
  tau, p, hist = upd(fx["fm_logits_w"], fx["fm_tau"], fx["fm_p"], fx["fm_hist"], 0.999)
  _close(tau, fx["fm_new_tau"])
  _close(p, fx["fm_new_p"])
  _close(hist, fx["fm_new_hist"])
  mask, pseudo = jax.vmap(ssl.freematch_mask, in_axes=(0, 0, 0, None))(fx["fm_logits_w"], tau, p,
                                                                        0.9)
  np.testing.assert_array_equal(mask, fx["fm_new_mask"])
  np.testing.assert_array_equal(pseudo, fx["fm_new_pseudo"])
  assert 0 < fx["fm_new_mask"].mean() < 1  # the threshold separates samples
  saf = jax.vmap(ssl.fairness_loss)(mask, fx["fm_logits_s"], p, hist)
  _close(saf, fx["fm_new_saf"])


@pytest.mark.parametrize("thr", [2, 4, 5])
def test_ensemble_pseudo_labels_match_official(fx, thr):
  targets, keep = ssl.ensemble_pseudo_labels(fx["fm_logits_w"], fx["fm_new_mask"], thr)
  np.testing.assert_array_equal(targets, fx[f"ens_targets_{thr}"])
  np.testing.assert_array_equal(keep, fx[f"ens_keep_{thr}"])


def test_max_correlation_and_schedule_match_official(fx):
  corr = jax.vmap(ssl.max_correlation, in_axes=(0, None))(fx["fm_logits_w"], fx["mc_labels"])
  _close(corr, fx["mc_corr"])
  assert np.isnan(fx["mc_corr_one_label"])
  assert np.isnan(ssl.max_correlation(fx["fm_logits_w"][0], np.zeros(16, np.int32)))
  np.testing.assert_array_equal(ssl.count_threshold(np.arange(60)), fx["count_thr"])


def _our_path(name: str) -> tuple:
  """Our variable path of an official WRN state-dict entry."""
  parts = name.split(".")
  leaf = {"weight": "kernel", "running_mean": "mean", "running_var": "var", "bias": "bias"}
  if parts[0] == "conv1":
    return ("conv1", "kernel")
  group, index, layer, kind = int(parts[0][5:]) - 1, int(parts[2]), parts[3], parts[4]
  layer = {"convShortcut": "shortcut"}.get(layer, layer)
  if layer.startswith("bn"):
    kind = {"weight": "scale"}.get(kind, leaf[kind])
  else:
    kind = leaf[kind]
  return ("groups", group, index, layer, kind)


def test_wrn_trunk_matches_official(fx):
  """WideResNet_ACBE's blocks (pre-activation, activate_before_residual in the first group, 1x1
  shortcuts of the raw input elsewhere, LeakyReLU 0.1, BN eps 1e-5) in eval mode."""
  from models.wide_resnet import WideResNet
  from make_fixtures import trunk_weights
  model = nnx.eval_shape(lambda: WideResNet(depth=10, widen_factor=2, num_classes=None,
                                            rngs=nnx.Rngs(0)))
  names = [str(n) for n in fx["wrn_names"]]
  shapes = [tuple(int(d) for d in row if d >= 0) for row in fx["wrn_shapes"]]
  loaded = []
  for n, w in zip(names, trunk_weights(names, shapes)):
    target, path = model, _our_path(n)
    for p in path[:-1]:
      target = target[p] if isinstance(p, int) else getattr(target, p)
    if target is None:  # the BN a block without activate_before_residual computes and discards
      continue
    var = getattr(target, path[-1])
    w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w
    assert var.shape == w.shape, n
    var.set_value(jnp.asarray(w))
    loaded.append(n)
  assert sorted(set(names) - set(loaded)) == sorted(
      f"block{g}.layer.0.bn1.{k}" for g in (2, 3)
      for k in ("weight", "bias", "running_mean", "running_var"))
  model.eval()
  ours = nnx.jit(lambda m, x: m.features(x))(model, jnp.asarray(
      np.transpose(fx["wrn_input"], (0, 2, 3, 1))))
  _close(np.transpose(np.asarray(ours), (0, 3, 1, 2)), fx["wrn_features"], atol=1e-4)

"""OGM / OGM-GE against a NumPy transcription of the official main.py (GeWu-Lab/OGM-GE_CVPR2022)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim
from optim import ogm_ge

GROUPS = {"audio": "^audio_encoder/", "visual": "^visual_encoder/"}


def conv_tree(seed=0, scale=1.0):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(scale * r.normal(size=s), jnp.float32)
  return {
      "audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 8)}, "bn1": {"scale": f(8), "bias": f(8)},
                        "layer1": {"0": {"conv1": {"kernel": f(3, 3, 8, 8)}}}},
      "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 8)},
                         "layer1": {"0": {"conv1": {"kernel": f(3, 3, 8, 8)},
                                          "downsample": {"kernel": f(1, 1, 8, 8)}}}},
      "fusion": {"fc_out": {"kernel": f(16, 6), "bias": f(6)}},
  }


def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_coeffs(out_a, out_v, y, alpha, continuous=False):
  """main.py's loop, transcribed (and the earlier relu(rho - 1) form)."""
  score_v = sum(np_softmax(out_v)[i][y[i]] for i in range(len(y)))
  score_a = sum(np_softmax(out_a)[i][y[i]] for i in range(len(y)))
  ratio_v = score_v / score_a
  ratio_a = 1 / ratio_v
  relu = lambda x: max(x, 0.0)
  if continuous:
    return 1 - np.tanh(alpha * relu(ratio_a - 1)), 1 - np.tanh(alpha * relu(ratio_v - 1))
  if ratio_v > 1:
    return 1.0, 1 - np.tanh(alpha * relu(ratio_v))
  return 1 - np.tanh(alpha * relu(ratio_a)), 1.0


def _logits(seed, b=16, c=6, sa=1.0, sv=2.0):
  r = np.random.default_rng(seed)
  return (r.normal(size=(b, c)).astype(np.float32) * sa, r.normal(size=(b, c)).astype(np.float32) * sv,
          r.integers(0, c, size=b).astype(np.int32))


_JITTED = {}


def _update(tx, grads, la, lv, y, step=0, rng=0):
  if id(tx) not in _JITTED:
    _JITTED[id(tx)] = (tx, jax.jit(lambda g, la, lv, y, s, r: tx.update(
        g, tx.init(g), None, modality_logits={"audio": la, "visual": lv}, labels=y, step=s,
        rng=jax.random.PRNGKey(r))[0]))
  return _JITTED[id(tx)][1](grads, la, lv, jnp.asarray(y), jnp.int32(step), jnp.int32(rng))


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("form", ["tanh", "tanh_relu"])
def test_coefficients_match_numpy(seed, form):
  la, lv, y = _logits(seed, sa=0.5 + seed, sv=3.0 - seed)
  p = lambda l: np_softmax(l)[np.arange(len(y)), y].sum()
  k = ogm_ge.coefficients(jnp.asarray([p(la), p(lv)]), 0.8, form)
  np.testing.assert_allclose(np.asarray(k), np_coeffs(la, lv, y, 0.8, form == "tanh_relu"),
                             rtol=1e-5)


def test_rho_exactly_one():
  k = np.asarray(ogm_ge.coefficients(jnp.asarray([3.0, 3.0]), 0.5, "tanh"))
  np.testing.assert_allclose(k, [1 - np.tanh(0.5), 1.0], rtol=1e-6)  # the code's else-branch
  k = np.asarray(ogm_ge.coefficients(jnp.asarray([3.0, 3.0]), 0.5, "tanh_relu"))
  np.testing.assert_allclose(k, [1.0, 1.0])


@pytest.mark.parametrize("form", ["tanh", "tanh_relu"])
def test_ogm_scales_only_conv_kernels_of_each_modality(form):
  grads = conv_tree(1)
  la, lv, y = _logits(5, sa=0.3, sv=4.0)
  tx = optim.get("ogm_ge")(param_groups=GROUPS, alpha=0.8, variant="ogm", coefficient=form)
  out = _update(tx, grads, la, lv, y)
  ka, kv = np_coeffs(la, lv, y, 0.8, form == "tanh_relu")
  assert min(ka, kv) < 0.99  # the test exercises a real modulation
  flat_g = dict(jax.tree_util.tree_flatten_with_path(grads)[0])
  for path, u in jax.tree_util.tree_flatten_with_path(out)[0]:
    g = np.asarray(flat_g[path])
    name = optim.paths.path_str(path)
    want = g
    if g.ndim == 4:
      want = g * (ka if name.startswith("audio") else kv)
    np.testing.assert_allclose(np.asarray(u), want, rtol=1e-5, atol=1e-8, err_msg=name)


def test_ogm_ge_noise_statistics_and_determinism():
  r = np.random.default_rng(0)
  g = {"audio_encoder": {"conv": {"kernel": jnp.asarray(r.normal(size=(3, 3, 32, 64)) * 0.02,
                                                        jnp.float32)}},
       "visual_encoder": {"conv": {"kernel": jnp.asarray(r.normal(size=(3, 3, 32, 64)) * 3.0 + 1.0,
                                                         jnp.float32)}}}
  la, lv, y = _logits(1, b=32, sa=0.2, sv=5.0)
  ka, kv = np_coeffs(la, lv, y, 0.8)
  tx = optim.get("ogm_ge")(param_groups=GROUPS, alpha=0.8)
  out = _update(tx, g, la, lv, y, rng=3)
  for m, k in (("audio", ka), ("visual", kv)):
    gm = np.asarray(g[f"{m}_encoder"]["conv"]["kernel"], np.float64)
    noise = np.asarray(out[f"{m}_encoder"]["conv"]["kernel"], np.float64) - k * gm
    sigma = gm.std(ddof=1) + 1e-8  # unbiased std of the unscaled gradient
    assert abs(noise.std() / sigma - 1) < 0.03, m
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size), m
  again = _update(tx, g, la, lv, y, rng=3)
  other = _update(tx, g, la, lv, y, rng=4)
  k = ("audio_encoder", "conv", "kernel")
  get = lambda t: np.asarray(t[k[0]][k[1]][k[2]])
  np.testing.assert_array_equal(get(out), get(again))
  assert not np.allclose(get(out), get(other))
  # Independent noise per tensor.
  na = get(out) - ka * np.asarray(g["audio_encoder"]["conv"]["kernel"])
  nv = np.asarray(out["visual_encoder"]["conv"]["kernel"]) - kv * np.asarray(
      g["visual_encoder"]["conv"]["kernel"])
  assert abs(np.corrcoef(na.ravel(), nv.ravel())[0, 1]) < 0.05


def test_zero_gradients_stay_finite():
  g = jax.tree_util.tree_map(jnp.zeros_like, conv_tree())
  la, lv, y = _logits(2)
  out = _update(optim.get("ogm_ge")(param_groups=GROUPS, alpha=0.8), g, la, lv, y)
  for leaf in jax.tree_util.tree_leaves(out):
    assert np.all(np.isfinite(leaf)) and np.max(np.abs(leaf)) < 1e-6  # sigma = 1e-8


def test_window_outside_is_identity():
  grads = conv_tree(3)
  la, lv, y = _logits(4, sa=0.1, sv=5.0)
  tx = optim.get("ogm_ge")(param_groups=GROUPS, alpha=0.8, start_step=10, end_step=20)
  for step, touched in ((9, False), (10, True), (19, True), (20, False)):
    out = _update(tx, grads, la, lv, y, step=step)
    same = np.array_equal(np.asarray(out["visual_encoder"]["conv1"]["kernel"]),
                          np.asarray(grads["visual_encoder"]["conv1"]["kernel"]))
    assert same != touched, step

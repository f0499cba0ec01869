"""AMSS / AMSS+ against NumPy transcriptions of njustkmg/TPAMI-AMSS (train_test.py, train_test_IT.py)."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim
from optim import amss

NAMES = ["audio", "visual"]
GROUPS = {"audio": "^audio_encoder/", "visual": "^visual_encoder/"}


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_significance(a_out, v_out, a, v, y, variant, t):
  """modal_caculate_MI of both scripts, in float64 NumPy."""
  limit = lambda c: 0.5 if np.isnan(c) else float(np.clip(c, 0.1, 0.9))
  probs = np.bincount(y) / len(y)  # length max(y) + 1, as torch.bincount
  ce = lambda logits: -np.mean(np_log_softmax(logits)[np.arange(len(y)), y])
  score_a, score_v = -ce(a_out), -ce(v_out)
  if variant == "audio_visual":
    hy = -np.sum(probs * np_log_softmax(probs))  # CrossEntropyLoss(probs, probs)
    ent = lambda f: np.mean(-np.sum(np.exp(np_log_softmax(f)) * np_log_softmax(f), -1))
    if score_a + hy + 0.5 <= 0 or score_v + hy + 0.5 <= 0:
      return 0.5, 0.5
    ra, rv = (score_a + hy + 0.5) / ent(a), (score_v + hy + 0.5) / ent(v)
  else:
    hy = -np.sum(probs * np.log2(probs + 1e-8))
    if score_a + hy + 0.5 < 0 or score_v + hy + 0.5 <= 0:
      return 0.5, 0.5
    ra, rv = score_a + hy, score_v + hy
  ta, tv = ra / t, rv / t
  return limit(np.exp(tv) / (np.exp(tv) + np.exp(ta))), limit(np.exp(ta) / (np.exp(tv) + np.exp(ta)))


def _inputs(seed, b=12, c=6, d=16, sa=1.0, sv=1.0, fa=1.0, fv=1.0, max_label=None):
  r = np.random.default_rng(seed)
  y = r.integers(0, c if max_label is None else max_label + 1, size=b).astype(np.int32)
  return (r.normal(size=(b, c)) * sa, r.normal(size=(b, c)) * sv, r.normal(size=(b, d)) * fa,
          r.normal(size=(b, d)) * fv, y)


def _coeff(a_out, v_out, a, v, y, variant, t=None):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return np.asarray(amss.significance({"audio": f32(a_out), "visual": f32(v_out)}, jnp.asarray(y),
                                      {"audio": f32(a), "visual": f32(v)}, NAMES, variant, t))


@pytest.mark.parametrize("variant,t", [("audio_visual", 0.2), ("image_text", 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_significance_matches_numpy(variant, t, seed):
  # Varied scales: one modality confident and right-ish, the other not; labels not covering all classes.
  a_out, v_out, a, v, y = _inputs(seed, sa=0.3 + seed, sv=2.0, fa=3.0, fv=0.5,
                                  max_label=3 if seed == 1 else None)
  a_out[np.arange(len(y)), y] += 2.0 * seed
  want = np_significance(a_out, v_out, a, v, y, variant, t)
  np.testing.assert_allclose(_coeff(a_out, v_out, a, v, y, variant), want, rtol=2e-5, atol=1e-6)


def test_label_entropy_quirk_uses_classes_up_to_max_label():
  y = np.array([0, 1, 1, 2, 2, 2], np.int32)
  probs = np.bincount(y) / len(y)
  want = -np.sum(probs * np_log_softmax(probs))
  got = float(amss.label_entropy(jnp.asarray(y), 10, "audio_visual"))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  padded = np.concatenate([probs, np.zeros(7)])  # what a length-C histogram would give instead
  assert abs(got + np.sum(padded * np_log_softmax(padded))) > 0.1


def test_nan_significance_and_degenerate_scores_give_half():
  a_out, v_out, a, v, y = _inputs(0)
  a_out[np.arange(len(y)), y] += 20.0  # confident and right: positive numerators
  v_out[np.arange(len(y)), y] += 20.0
  a = np.zeros_like(a); a[:, 0] = 1e4  # one-hot features: entropy 0 -> r = inf -> inf/inf = NaN
  v = a.copy()
  with np.errstate(all="ignore"):
    assert np_significance(a_out, v_out, a, v, y, "audio_visual", 0.2) == (0.5, 0.5)
  np.testing.assert_allclose(_coeff(a_out, v_out, a, v, y, "audio_visual"), [0.5, 0.5])
  # float32 overflow of e^{r/T} (r / T > 88.7) is NaN in the code too -> 0.5.
  a = np.zeros_like(a); a[:, 0] = 8.0; v = a.copy()
  # (r ~ 50 here: r / T = 250 > log(float32 max) = 88.7)
  got = _coeff(a_out, v_out, a, v, y, "audio_visual")
  np.testing.assert_allclose(got, [0.5, 0.5])
  a_out, v_out, a, v, y = _inputs(1)
  a_out = a_out * 50  # very wrong, confident audio: score + H_Y + 0.5 <= 0
  a_out[np.arange(len(y)), y] = -100
  assert np_significance(a_out, v_out, a, v, y, "audio_visual", 0.2) == (0.5, 0.5)
  np.testing.assert_allclose(_coeff(a_out, v_out, a, v, y, "audio_visual"), [0.5, 0.5])


def test_importance_and_all_equal_importance():
  r = np.random.default_rng(0)
  g = r.normal(size=(3, 3, 4, 8)).astype(np.float32)
  gn = (g ** 2).sum(axis=(0, 1, 2))
  np.testing.assert_allclose(np.asarray(amss.importance(jnp.asarray(g))), gn / gn.sum(), rtol=1e-5)
  ones = jnp.ones((3, 3, 4, 8))
  np.testing.assert_allclose(np.asarray(amss.importance(ones)), np.full(8, 1 / 8), rtol=1e-6)
  z = jnp.zeros((3, 3, 4, 8))
  np.testing.assert_allclose(np.asarray(amss.importance(z)), np.full(8, 1 / 8))
  gumbel = jax.random.gumbel(jax.random.PRNGKey(0), (8,))
  plus = np.asarray(amss.filter_mask(gumbel, ones, 0.5, plus=True))
  np.testing.assert_allclose(np.sort(plus), [0] * 4 + [4.0] * 4, rtol=1e-6)  # 1 / (1/8 + 1/8)


@pytest.mark.parametrize("n,coeff", [(8, 0.1), (64, 0.9), (7, 1.0), (5, 0.6)])
def test_kept_counts(n, coeff):
  g = jnp.asarray(np.random.default_rng(n).normal(size=(1, 1, 2, n)), jnp.float32)
  gumbel = jax.random.gumbel(jax.random.PRNGKey(n), (n,))
  mask = np.asarray(amss.filter_mask(gumbel, g, coeff, plus=False))
  assert set(np.unique(mask)) <= {0.0, 1.0}
  assert mask.sum() == math.ceil(n * np.float32(coeff))


def test_sampling_law_matches_sequential_multinomial():
  """Inclusion probabilities of Gumbel-top-k == sequential draws without replacement (brute force)."""
  p = np.array([0.05, 0.15, 0.3, 0.5])
  k = 2
  exact = np.zeros(4)
  for seq in itertools.permutations(range(4), k):
    prob, left = 1.0, 1.0
    for i in seq:
      prob *= p[i] / left
      left -= p[i]
    exact[list(seq)] += prob
  draws = 20000
  gumbel = jax.random.gumbel(jax.random.PRNGKey(0), (draws, 4))
  kept = jax.vmap(lambda z: amss.sample_without_replacement(z, jnp.asarray(p, jnp.float32), k))(gumbel)
  freq = np.asarray(kept).mean(0)
  np.testing.assert_allclose(freq, exact, atol=0.015)
  assert np.all(np.asarray(kept).sum(1) == k)


def conv_tree(seed=0):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return {
      "audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 8)}, "bn1": {"scale": f(8)},
                        "layer1": {"0": {"conv1": {"kernel": f(3, 3, 8, 8)},
                                         "conv2": {"kernel": f(3, 3, 8, 8)},
                                         "downsample_conv": {"kernel": f(1, 1, 8, 8)}}}},
      "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 8)},
                         "layer2": {"0": {"conv1": {"kernel": f(3, 3, 8, 16)}}}},
      "fusion": {"fc_out": {"kernel": f(16, 6)}},
  }


@pytest.mark.parametrize("name", ["amss", "amss_plus"])
def test_update_masks_layer_convs_per_output_filter(name):
  grads = conv_tree(1)
  a_out, v_out, a, v, y = _inputs(3, sa=0.2, sv=3.0, fa=2.0)
  v_out[np.arange(len(y)), y] += 3.0
  ca, cv = np_significance(a_out, v_out, a, v, y, "audio_visual", 0.2)
  from models import audiovisual
  tx = optim.get(name)(param_groups=GROUPS, kernels=audiovisual.MASKED_KERNELS)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  out = jax.jit(lambda g: tx.update(
      g, tx.init(g), None, modality_logits={"audio": f32(a_out), "visual": f32(v_out)},
      labels=jnp.asarray(y), modality_features={"audio": f32(a), "visual": f32(v)},
      rng=jax.random.PRNGKey(7), step=0)[0])(grads)
  masked = {"audio_encoder/layer1/0/conv1/kernel": ca, "audio_encoder/layer1/0/conv2/kernel": ca,
            "visual_encoder/layer2/0/conv1/kernel": cv}
  flat_g = {optim.paths.path_str(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(grads)[0]}
  for p, u in jax.tree_util.tree_flatten_with_path(out)[0]:
    path, u, g = optim.paths.path_str(p), np.asarray(u), flat_g[optim.paths.path_str(p)]
    if path not in masked:
      np.testing.assert_array_equal(u, g, err_msg=path)  # stem, downsample, bn, fusion untouched
      continue
    ratio = (u / g).reshape(-1, g.shape[-1])
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)
    mask = ratio[0]
    n = g.shape[-1]
    assert (mask != 0).sum() == math.ceil(n * np.float32(masked[path])), path
    if name == "amss":
      assert set(np.round(np.unique(mask), 6)) <= {0.0, 1.0}
    else:
      gn = (g ** 2).reshape(-1, n).sum(0)
      pi = gn / gn.sum()
      kept = mask != 0
      np.testing.assert_allclose(mask[kept], 1 / (pi[kept] + 1 / n), rtol=1e-5)


def test_zero_gradients_are_safe():
  grads = jax.tree_util.tree_map(jnp.zeros_like, conv_tree())
  a_out, v_out, a, v, y = _inputs(0)
  tx = optim.get("amss_plus")(param_groups=GROUPS)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  out = jax.jit(lambda g: tx.update(
      g, tx.init(g), None, modality_logits={"audio": f32(a_out), "visual": f32(v_out)},
      labels=jnp.asarray(y), modality_features={"audio": f32(a), "visual": f32(v)},
      rng=jax.random.PRNGKey(0))[0])(grads)
  for leaf in jax.tree_util.tree_leaves(out):
    assert np.all(np.asarray(leaf) == 0)


def test_layout_is_checked_and_oihw_masks_the_first_axis():
  """The same kernels in PyTorch OIHW layout (layout="OIHW") get the same masks, moved to axis 0;
  declared HWIO, an OIHW kernel raises instead of being masked along its kernel-width axis. With
  kernels=None every 4-D kernel of the groups is masked (stem and downsample too)."""
  grads = conv_tree(2)
  a_out, v_out, a, v, y = _inputs(4, sa=0.2, sv=3.0, fa=2.0)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  kw = dict(modality_logits={"audio": f32(a_out), "visual": f32(v_out)}, labels=jnp.asarray(y),
            modality_features={"audio": f32(a), "visual": f32(v)}, rng=jax.random.PRNGKey(3))
  to_oihw = lambda t: jax.tree_util.tree_map(
      lambda x: jnp.transpose(x, (3, 2, 0, 1)) if x.ndim == 4 else x, t)
  hwio = optim.get("amss_plus")(param_groups=GROUPS)
  oihw = optim.get("amss_plus")(param_groups=GROUPS, layout="OIHW")
  out_h = jax.jit(lambda g: hwio.update(g, hwio.init(g), None, **kw)[0])(grads)
  out_o = jax.jit(lambda g: oihw.update(g, oihw.init(g), None, **kw)[0])(to_oihw(grads))
  for (p, x), y_ in zip(jax.tree_util.tree_flatten_with_path(to_oihw(out_h))[0],
                        jax.tree_util.tree_leaves(out_o)):
    np.testing.assert_allclose(np.asarray(y_), np.asarray(x), rtol=1e-6,
                               err_msg=optim.paths.path_str(p))
  flat_g = jax.tree_util.tree_leaves(grads)
  changed = [optim.paths.path_str(p) for (p, u), g in
             zip(jax.tree_util.tree_flatten_with_path(out_h)[0], flat_g)
             if not np.array_equal(np.asarray(u), np.asarray(g))]
  assert "audio_encoder/conv1/kernel" in changed and "fusion/fc_out/kernel" not in changed
  big = {"audio_encoder": {"layer1": {"0": {"conv1": {"kernel": jnp.ones((16, 8, 3, 3))}}}},
         "visual_encoder": {"layer1": {"0": {"conv1": {"kernel": jnp.ones((16, 8, 3, 3))}}}}}
  with pytest.raises(ValueError, match="not HWIO"):
    hwio.update(big, hwio.init(big), None, **kw)

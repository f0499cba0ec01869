"""PMR, G-Blending and UMT losses against NumPy written from the papers / official PMR code."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses import balancing


def np_ce(logits, y):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -logp[np.arange(len(y)), y].mean(), np.exp(logp)


def test_class_prototypes_and_momentum():
  r = np.random.default_rng(0)
  f, y = r.normal(size=(20, 5)), r.integers(0, 3, size=20)
  want = np.stack([f[y == c].mean(0) for c in range(4) if (y == c).any()] + [np.zeros(5)])
  got = np.asarray(balancing.class_prototypes(jnp.asarray(f), jnp.asarray(y), 4))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  old = r.normal(size=(4, 5))
  got = np.asarray(balancing.class_prototypes(jnp.asarray(f), jnp.asarray(y), 4, jnp.asarray(old)))
  want_b = 0.8 * want + 0.2 * old
  want_b[3] = old[3]  # absent class keeps its old prototype
  np.testing.assert_allclose(got, want_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("strong", ["audio", "visual"])
def test_pmr_regularizer_matches_numpy(squared, strong):
  r = np.random.default_rng(1)
  y = r.integers(0, 4, size=10)
  protos = {m: r.normal(size=(4, 6)) for m in ("audio", "visual")}
  feats = {m: r.normal(size=(10, 6)) * 2 for m in ("audio", "visual")}
  feats[strong] = protos[strong][y] + 0.1 * r.normal(size=(10, 6))  # close to its class prototype
  def dist(f, c):  # EU_dist loop of the code
    d = np.array([[np.sqrt((fi - cj) @ (fi - cj)) for cj in c] for fi in f])
    return d ** 2 if squared else d
  ce, p = {}, {}
  for m in feats:
    ce[m], p[m] = np_ce(-dist(feats[m], protos[m]), y)
  s = {m: p[m][np.arange(10), y].sum() for m in feats}
  ratio = s["audio"] / s["visual"]
  beta, lam = (0.0, 0.6) if ratio > 1 else ((0.6, 0.0) if ratio < 1 else (0.0, 0.0))
  reg, coef = balancing.pmr_regularizer({m: jnp.asarray(v) for m, v in feats.items()},
                                        {m: jnp.asarray(v) for m, v in protos.items()},
                                        jnp.asarray(y), alpha=0.6, squared=squared)
  np.testing.assert_allclose(np.asarray(coef), [beta, lam])
  assert (beta == 0) == (strong == "audio")  # the slower modality is the one regularised
  np.testing.assert_allclose(float(reg), beta * ce["audio"] + lam * ce["visual"], rtol=1e-5)


def test_gblend_weights_and_loss():
  tr0, va0 = np.array([1.0, 1.2, 0.9]), np.array([1.3, 1.4, 1.2])
  tr1, va1 = np.array([0.5, 0.9, 0.3]), np.array([1.1, 1.3, 1.15])
  dg, do = va0 - va1, (va1 - tr1) - (va0 - tr0)
  w = dg / do ** 2
  w = w / w.sum()
  got = balancing.gblend_weights(*(jnp.asarray(x) for x in (tr0, va0, tr1, va1)))
  np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5)
  losses = jnp.asarray([0.3, 2.0, 1.0])
  np.testing.assert_allclose(float(balancing.gblend_loss(losses, got)), w @ [0.3, 2.0, 1.0], rtol=1e-5)


def test_umt_loss_and_teacher_is_frozen():
  r = np.random.default_rng(2)
  f = {m: jnp.asarray(r.normal(size=(4, 3))) for m in ("audio", "visual")}
  t = {m: jnp.asarray(r.normal(size=(4, 3))) for m in ("audio", "visual")}
  want = 0.7 + 10 * sum(np.mean((np.asarray(f[m]) - np.asarray(t[m])) ** 2) for m in f)
  np.testing.assert_allclose(float(balancing.umt_loss(jnp.asarray(0.7), f, t)), want, rtol=1e-5)
  g = jax.grad(lambda tt: balancing.umt_loss(jnp.asarray(0.0), f, tt))(t)
  assert all(float(jnp.abs(x).sum()) == 0 for x in jax.tree_util.tree_leaves(g))

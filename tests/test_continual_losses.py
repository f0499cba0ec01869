"""Continual-learning losses against independent NumPy versions and their stated limits."""
import jax
import jax.numpy as jnp
import numpy as np

from losses import continual as cl


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_kd_and_uncertainty_match_numpy_and_limits():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
  ref = -(_softmax(t / 2) * np.log(_softmax(s / 2))).sum(-1)
  np.testing.assert_allclose(cl.kd_loss(jnp.asarray(s), jnp.asarray(t), 2.0), ref, rtol=1e-5)
  p = _softmax(t)
  np.testing.assert_allclose(cl.prediction_uncertainty(jnp.asarray(t)),
                             -(p * np.log(p)).sum(-1) / np.log(5), rtol=1e-5)
  u = np.asarray(cl.prediction_uncertainty(jnp.asarray([[0.0] * 5, [50.0, 0, 0, 0, 0]])))
  np.testing.assert_allclose(u, [1.0, 0.0], atol=1e-6)
  ce, distill = jnp.asarray([1.0, 2.0]), jnp.asarray([3.0, 5.0])
  np.testing.assert_allclose(cl.uncertainty_weighted(ce, distill, jnp.zeros(2)), distill)
  np.testing.assert_allclose(cl.uncertainty_weighted(ce, distill, jnp.ones(2)), ce)
  np.testing.assert_allclose(cl.uncertainty_weighted(ce, distill, jnp.full(2, 0.25)),
                             0.75 * distill + 0.25 * ce)
  np.testing.assert_allclose(cl.uncertainty_weighted(ce, distill, None), ce + distill)


def _at(f):
  a = (f ** 2).mean(-1).reshape(f.shape[0], -1)
  return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_integrated_feature_loss_limits():
  rng = np.random.default_rng(1)
  student = [rng.normal(size=(2, 4, 4, c)).astype(np.float32) for c in (3, 5, 6)]
  teacher = [rng.normal(size=(2, 4, 4, c)).astype(np.float32) for c in (3, 5, 6)]
  sj, tj = [jnp.asarray(x) for x in student], [jnp.asarray(x) for x in teacher]
  # Identity weights: block-to-block attention transfer.
  ref = sum(((_at(s) - _at(t)) ** 2).sum(-1) for s, t in zip(student, teacher))
  np.testing.assert_allclose(cl.integrated_feature_loss(sj, tj, jnp.eye(3)), ref, rtol=1e-5)
  # Uniform weights: every block distils the average of the teacher's normalised maps.
  avg = sum(_at(t) for t in teacher) / 3
  avg = avg / np.linalg.norm(avg, axis=1, keepdims=True)
  ref = sum(((_at(s) - avg) ** 2).sum(-1) for s in student)
  np.testing.assert_allclose(cl.integrated_feature_loss(sj, tj, jnp.full((3, 3), 1 / 3)), ref,
                             rtol=1e-5)
  # Blocks of other sizes are resized to the student block's resolution.
  small_teacher = [jnp.asarray(rng.normal(size=(2, 2, 2, 3)).astype(np.float32))]
  out = cl.integrated_feature_loss(sj[:1], small_teacher, jnp.ones((1, 1)))
  assert out.shape == (2,) and np.isfinite(np.asarray(out)).all()


def test_exemplar_cutmix_mixes_only_exemplars_with_exemplars():
  b = 6
  images = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32)[:, None, None, None], (b, 8, 8, 1))
  is_ex = jnp.asarray([False, True, False, True, True, False])
  mixed, partner, lam = cl.exemplar_cutmix(jax.random.PRNGKey(3), images, is_ex, 1.0)
  mixed, partner, lam = np.asarray(mixed), np.asarray(partner), np.asarray(lam)
  assert partner.tolist() == [0, 3, 2, 4, 1, 5]  # the next exemplar, cyclically
  for i in range(b):
    values = set(np.unique(mixed[i]).tolist())
    if is_ex[i]:
      assert values <= {float(i), float(partner[i])}
      np.testing.assert_allclose(lam[i], np.mean(mixed[i] == i))
    else:
      assert values == {float(i)} and lam[i] == 1.0

"""Deep-hashing losses and ADSH's discrete update against NumPy references written from the equations
and brute force on tiny problems (losses/hashing.py)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses import hashing as hl


def _problem(seed, n=6, m=4, c=4, num_labels=3):
  rng = np.random.default_rng(seed)
  db_labels = (rng.random((n, num_labels)) < 0.4).astype(np.float32)
  omega = rng.choice(n, m, replace=False).astype(np.int32)
  u = np.tanh(rng.normal(size=(m, c))).astype(np.float32)
  v = np.where(rng.random((n, c)) < 0.5, -1.0, 1.0).astype(np.float32)
  s = (db_labels[omega] @ db_labels.T > 0).astype(np.float32)
  r = s.sum() / (1 - s).sum()
  return db_labels, omega, u, v, s * (1 + r) - r, r


def _objective_np(u, v, s_soft, omega, gamma):
  c = u.shape[1]
  return ((u @ v.T - c * s_soft) ** 2).sum() + gamma * ((v[omega] - u) ** 2).sum()


@pytest.mark.parametrize("seed", range(2))
def test_discrete_update_is_bitwise_brute_force_minimum(seed):
  db_labels, omega, u, v, s_soft, r = _problem(seed)
  gamma = 3.0
  # Reference: each column in turn set to the brute-force minimiser of J over {-1,+1}^n.
  ref = v.copy()
  for k in range(v.shape[1]):
    best, best_col = np.inf, None
    for col in itertools.product((-1.0, 1.0), repeat=v.shape[0]):
      trial = ref.copy()
      trial[:, k] = col
      j = _objective_np(u, trial, s_soft, omega, gamma)
      if j < best - 1e-9:
        best, best_col = j, np.array(col)
    ref[:, k] = best_col
  stu = hl.soft_similarity_t_u(jnp.asarray(db_labels), jnp.asarray(db_labels[omega]),
                               jnp.asarray(u), r, chunk=4)
  got = hl.discrete_update(jnp.asarray(v), jnp.asarray(u), stu, jnp.asarray(omega), gamma)
  np.testing.assert_array_equal(np.asarray(got), ref)


def test_objective_never_increases_over_outer_iterations():
  rng = np.random.default_rng(7)
  n, m, c = 40, 12, 8
  db_labels = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
  v = jnp.asarray(np.where(rng.random((n, c)) < 0.5, -1.0, 1.0), jnp.float32)
  r = float(hl.soft_ratio(hl.similarity(db_labels, db_labels)))
  for it in range(5):
    omega = rng.choice(n, m, replace=False).astype(np.int32)
    u = np.tanh(rng.normal(size=(m, c))).astype(np.float32)
    s_soft = np.asarray(hl.soft_similarity(hl.similarity(db_labels[omega], db_labels), r))
    before = float(hl.adsh_objective(u, v, s_soft, omega, 200.0))
    stu = hl.soft_similarity_t_u(db_labels, db_labels[omega], jnp.asarray(u), r, chunk=16)
    v = hl.discrete_update(v, jnp.asarray(u), stu, jnp.asarray(omega), 200.0)
    after = float(hl.adsh_objective(u, v, s_soft, omega, 200.0))
    assert after <= before * (1 + 1e-6), (it, before, after)
    assert set(np.unique(np.asarray(v))) <= {-1.0, 1.0}


def test_padded_omega_rows_change_nothing():
  db_labels, omega, u, v, s_soft, r = _problem(3)
  pad_omega = np.concatenate([omega, np.zeros(3, np.int32)])
  pad_u = np.concatenate([u, np.zeros((3, u.shape[1]), np.float32)])
  a = hl.discrete_update(v, u, hl.soft_similarity_t_u(db_labels, db_labels[omega], u, r), omega,
                         5.0)
  b = hl.discrete_update(v, pad_u, hl.soft_similarity_t_u(db_labels, db_labels[pad_omega], pad_u,
                                                          r), pad_omega, 5.0)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_soft_similarity_and_chunked_product():
  db_labels, omega, u, v, s_soft, r = _problem(1, n=11)
  np.testing.assert_allclose(float(hl.soft_ratio(jnp.asarray((db_labels[omega] @ db_labels.T > 0)
                                                             .astype(np.float32)))), r, rtol=1e-6)
  got = hl.soft_similarity_t_u(db_labels, db_labels[omega], u, r, chunk=4)  # 11 = 4 + 4 + 3
  np.testing.assert_allclose(np.asarray(got), s_soft.T @ u, rtol=1e-5, atol=1e-6)
  s = np.array([[1, 0], [0, 0]], np.float32)  # r = 1/3: similar -> 1, dissimilar -> -1/3
  np.testing.assert_allclose(np.asarray(hl.soft_similarity(s, hl.soft_ratio(s))),
                             [[1, -1 / 3], [-1 / 3, -1 / 3]], rtol=1e-6)


def test_adsh_loss_matches_numpy():
  rng = np.random.default_rng(0)
  b, n, c = 3, 7, 5
  u = np.tanh(rng.normal(size=(b, c))).astype(np.float32)
  v = np.sign(rng.normal(size=(n, c))).astype(np.float32)
  s = rng.choice([1.0, -0.25], size=(b, n)).astype(np.float32)
  idx = np.array([4, 0, 6])
  ref = 0.0
  for i in range(b):
    for j in range(n):
      ref += (u[i] @ v[j] - c * s[i, j]) ** 2
    ref += 200 * np.sum((v[idx[i]] - u[i]) ** 2)
  ref /= n * b
  got = hl.adsh_loss(u, v, s, v[idx], 200.0, n, scale=12 / c)
  np.testing.assert_allclose(float(got), ref * 12 / c, rtol=1e-5)


def _hellinger_np(p, q):
  return np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum()) / np.sqrt(2)


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def test_exchnet_diversity_losses_match_numpy():
  rng = np.random.default_rng(1)
  b, m, h, w, d = 2, 3, 2, 3, 4
  maps = rng.normal(size=(b, m, h, w, d)).astype(np.float32)
  feats = rng.normal(size=(b, m, d)).astype(np.float32)
  sp = ch = 0.0
  for i in range(b):
    ps = [_softmax(maps[i, j].mean(-1).ravel()) for j in range(m)]
    qs = [_softmax(feats[i, j]) for j in range(m)]
    pairs = [(x, y) for x in range(m) for y in range(x + 1, m)]
    sp += 1 - np.mean([_hellinger_np(ps[x], ps[y]) for x, y in pairs])
    ch += max(0.0, 0.4 - np.mean([_hellinger_np(qs[x], qs[y]) for x, y in pairs]))
  np.testing.assert_allclose(float(hl.spatial_diversity_loss(maps)), sp, rtol=1e-5)
  np.testing.assert_allclose(float(hl.channel_diversity_loss(feats, 0.4)), ch, rtol=1e-4,
                             atol=1e-6)
  # identical parts: zero distance -> spatial loss 1 per example, channel loss t per example
  same = np.repeat(maps[:, :1], m, 1)
  np.testing.assert_allclose(float(hl.spatial_diversity_loss(same)), b, rtol=1e-4)
  np.testing.assert_allclose(float(hl.channel_diversity_loss(np.repeat(feats[:, :1], m, 1))),
                             0.4 * b, rtol=1e-4)


def test_alignment_and_exchange():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(3, 2, 4)).astype(np.float32)
  anchors = rng.normal(size=(5, 2, 4)).astype(np.float32)
  y = np.array([4, 0, 4])
  ref = np.mean([np.linalg.norm((f[i] - anchors[y[i]]).ravel()) for i in range(3)])
  np.testing.assert_allclose(float(hl.alignment_loss(f, anchors, y, "per_example")), ref,
                             rtol=1e-5)
  ref = np.linalg.norm(f - anchors[y]) / 3  # reference: one norm over the batch
  np.testing.assert_allclose(float(hl.alignment_loss(f, anchors, y)), ref, rtol=1e-5)
  keep = np.array([[True, False], [False, False], [True, True]])
  got = np.asarray(hl.exchange_features(f, anchors, y, keep))
  for i in range(3):
    for j in range(2):
      np.testing.assert_array_equal(got[i, j], f[i, j] if keep[i, j] else anchors[y[i], j])


def test_sami_loss_matches_loops():
  rng = np.random.default_rng(3)
  b, c, blocks, radius = 5, 10, 3, 4  # blocks of 4, 3, 3 bits; block radius 1
  u = np.tanh(rng.normal(size=(b, c)) * 2).astype(np.float32)
  labels = np.eye(2, dtype=np.float32)[[0, 1, 0, 0, 1]]
  sizes, start = [4, 3, 3], [0, 4, 7]
  total, count = 0.0, 0
  for i in range(b):
    for j in range(b):
      if i == j or labels[i] @ labels[j] == 0:
        continue
      per = [max(0.0, (s - u[i, a:a + s] @ u[j, a:a + s]) / 2 - 1) ** 2 for a, s in zip(start, sizes)]
      total += np.mean(per)
      count += 1
  np.testing.assert_allclose(float(hl.sami_loss(u, labels, blocks, radius)), total / count,
                             rtol=1e-5)


def test_selection_reward_and_reinforce():
  codes = np.array([[[1, 1, 1, 1], [-1, -1, -1, -1]]], np.float32)  # one query, two region codes
  db = np.array([[1, 1, 1, -1], [-1, -1, -1, 1], [1, -1, 1, -1], [-1, -1, -1, -1]], np.float32)
  s = np.array([[1, 0, 1, 1]], np.float32)
  # code 0 ball (r=1): db 0 (d=1); code 1 ball: db 1 (d=1), db 3 (d=0)
  only_first = hl.selection_reward(codes, np.array([[True, False]]), db, s, 1, 0.1)
  both = hl.selection_reward(codes, np.array([[True, True]]), db, s, 1, 0.1)
  np.testing.assert_allclose(np.asarray(only_first), [1 / 3 - 0.1], rtol=1e-6)  # found {0} of {0,2,3}
  np.testing.assert_allclose(np.asarray(both), [2 / 3 - 0.2], rtol=1e-6)  # found {0,1,3}
  none_relevant = hl.selection_reward(codes, np.array([[True, True]]), db, 0 * s, 1, 0.1)
  np.testing.assert_allclose(np.asarray(none_relevant), [-0.2], rtol=1e-6)

  logits = jnp.array([[0.3, -1.0], [2.0, 0.5]])
  actions = jnp.array([[1, 0], [1, 1]])
  reward = jnp.array([1.0, 0.0])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  logp = (np.asarray(actions) * np.log(p) + (1 - np.asarray(actions)) * np.log(1 - p)).sum(1)
  adv = np.asarray(reward) - 0.5
  np.testing.assert_allclose(float(hl.reinforce_loss(logits, actions, reward)),
                             -np.mean(adv * logp), rtol=1e-6)
  grad = jax.grad(lambda l: hl.reinforce_loss(l, actions, reward))(logits)
  np.testing.assert_allclose(np.asarray(grad), -(adv[:, None] * (np.asarray(actions) - p)) / 2,
                             rtol=1e-5)

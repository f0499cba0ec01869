"""Hashing model pieces (SEM mask, ICON channel attention, code layouts), the task's outer update and
the retrieval data protocol, against NumPy references."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import models
from losses import hashing as hl
from ml_pipelines.data import hashing_data
from ml_pipelines.tasks import hashing as hashing_tasks
from models import hashing as mh


def test_sem_mask_matches_numpy():
  rng = np.random.default_rng(0)
  fea = rng.normal(size=(2, 3, 4, 1)).astype(np.float32)
  a = np.exp(fea.reshape(2, 12))
  a = (a / a.sum(1, keepdims=True)).reshape(fea.shape)
  ref = np.clip((a - a.mean()) / a.std(ddof=1) ** 0.15 + 1, 0, 2)
  np.testing.assert_allclose(np.asarray(mh.sem_mask(jnp.asarray(fea), 0.15)), ref, rtol=1e-5)


def test_channel_attention_matches_loops():
  rng = np.random.default_rng(1)
  b, n, g, d = 2, 5, 3, 4
  q, k, v = (rng.normal(size=(b, n, g, d)).astype(np.float32) for _ in range(3))
  ref = np.zeros_like(q)
  for bi in range(b):
    for gi in range(g):
      logits = q[bi, :, gi].T @ k[bi, :, gi] / np.sqrt(d)  # [d, d] over positions
      logits = np.sign(logits) * np.sqrt(np.abs(logits) + 1e-5)
      attn = np.exp(logits - logits.max(1, keepdims=True))
      attn /= attn.sum(1, keepdims=True)
      ref[bi, :, gi] = v[bi, :, gi] @ attn.T
  np.testing.assert_allclose(np.asarray(mh.channel_attention(q, k, v)), ref, rtol=1e-4, atol=1e-5)


def test_code_layouts_and_exchnet_head():
  from flax import nnx
  for bits, global_bits, local_bits in ((12, 6, 2), (32, 17, 5), (48, 24, 8)):
    m = nnx.eval_shape(lambda: models.build("semicon", bits=bits, backbone="tiny", in_channels=1,
                                          width=8, attention_rounds=1))
    assert m.global_hash.out_features == global_bits
    assert [h.out_features for h in m.local_hash] == [local_bits] * 3
  dmih = nnx.eval_shape(lambda: models.build("dmih", bits=10, num_blocks=3, backbone="tiny",
                                           in_channels=1, width=8))
  assert [h.out_features for h in dmih.heads] == [4, 3, 3]  # multi_index.split_bits(10, 3)
  x = jnp.asarray(np.random.default_rng(2).random((2, 8, 8, 1)), jnp.float32)
  ex = models.build("exchnet", bits=12, backbone="tiny", in_channels=1, width=8)
  ex.eval()

  @nnx.jit
  def both(model, x):
    p = model.parts(x)
    return model(x)["code"], model.head(p["part_features"], p["global"]), p

  code, head, p = both(ex, x)
  np.testing.assert_allclose(np.asarray(code), np.asarray(head), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(p["part_features"]),
                             np.asarray(p["part_maps"].mean(axis=(2, 3))), rtol=1e-5)
  region = mh.region_features(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, 0]
  np.testing.assert_allclose(np.asarray(region), [7.5, 2.5, 4.5, 10.5, 12.5])


def _official_adsh_iteration(v, u, sample_labels, db_labels, select_index, code_length, gamma):
  """NumPy transcription of one outer iteration's discrete step of the official ADSH
  (jiangqy/ADSH-AAAI2018, ADSH_pytorch/ADSH_CIFAR_10.py: `calc_sim` on the iteration's sample, then
  the bit loop); returns (V, r)."""
  s = (sample_labels @ db_labels.T > 0).astype(np.float64)
  r = s.sum() / (1 - s).sum()
  sim = s * (1 + r) - r
  v = v.astype(np.float64).copy()
  bar_u = np.zeros((db_labels.shape[0], code_length))
  bar_u[select_index, :] = u
  q = -2 * code_length * sim.transpose().dot(u) - 2 * gamma * bar_u
  for k in range(code_length):
    sel_ind = np.setdiff1d([ii for ii in range(code_length)], k)
    v_, uk, u_ = v[:, sel_ind], u[:, k], u[:, sel_ind]
    v[:, k] = -np.sign(q[:, k] + 2 * v_.dot(u_.transpose().dot(uk)))
  return v, r


def test_outer_update_follows_official_adsh_iteration():
  """The task's jitted outer iteration recomputes r from the visited rows Omega (multi-label, so r
  is not a class-count ratio) and updates V as the official code does for its sample; padding rows
  of the fixed-size Omega change nothing."""
  c = ml_collections.ConfigDict(dict(batch_size=4, model=dict(bits=6),
                                     task=dict(name="adsh", gamma=50.0, outer_steps=2)))
  task = hashing_tasks.ADSH(c)
  rng = np.random.default_rng(3)
  n = 20
  labels = (rng.random((n, 4)) < 0.3).astype(np.float32)
  seen = np.zeros(n, bool)
  seen[[1, 5, 6, 11, 19]] = True
  extra = {"V": jnp.asarray(np.sign(rng.normal(size=(n, 6))), jnp.float32),
           "U": jnp.asarray(np.tanh(rng.normal(size=(n, 6))), jnp.float32),
           "seen": jnp.asarray(seen), "db_labels": jnp.asarray(labels),
           "r": jnp.float32(0.3), "outer": jnp.int32(0)}
  omega, w = task.omega(extra)
  assert len(omega) == 8 and w.sum() == 5
  out = task._outer_update(extra, jnp.asarray(omega), jnp.asarray(w))
  rows = np.flatnonzero(seen)
  v_ref, r_ref = _official_adsh_iteration(np.asarray(extra["V"]), np.asarray(extra["U"])[rows],
                                          labels[rows], labels, rows, 6, 50.0)
  np.testing.assert_allclose(float(out["r"]), r_ref, rtol=1e-6)
  assert abs(r_ref - 0.3) > 0.05  # the stale r would not pass
  np.testing.assert_array_equal(np.asarray(out["V"]), v_ref)
  assert int(out["outer"]) == 1 and not np.asarray(out["seen"]).any()
  assert not np.asarray(out["U"]).any()


def test_semicon_database_codes_start_continuous():
  """SEMICON's V starts as randn (official `B = torch.randn(...)`); `sign_randn` is its sign."""
  class Env:
    def dataset(self, split):
      return type("D", (), {"info": {"labels": np.eye(3, dtype=np.float32)[np.arange(300) % 3]}})
  v = {}
  for v_init in ("randn", "sign_randn"):
    c = ml_collections.ConfigDict(dict(batch_size=8, model=dict(bits=12),
                                       data=dict(train_split="database"),
                                       task=dict(name="semicon", outer_steps=4, v_init=v_init)))
    extra = hashing_tasks.SEMICON(c).init_extra(Env(), jax.random.key(0), None)
    v[v_init] = np.asarray(extra["V"])
    assert 0.3 < float(extra["r"]) < 0.7  # ~ 1/3 similar / 2/3 dissimilar pairs
  assert len(np.unique(np.abs(v["randn"]))) == v["randn"].size  # continuous
  assert abs(v["randn"].std() - 1.0) < 0.05 and abs(v["randn"].mean()) < 0.05
  np.testing.assert_array_equal(v["sign_randn"], np.sign(v["randn"]))
  assert hashing_tasks.SEMICON(ml_collections.ConfigDict(dict(
      batch_size=8, model=dict(bits=12), task=dict(name="semicon")))).v_init == "randn"


def test_icon_with_zero_qkv_returns_relu_of_permuted_input():
  """Official `ChannelTransformer` quirk: with zero qkv weights and biases both attentions give 0,
  and the in-place ReLU makes the residual y = relu(BN(x permuted (h, d) -> (d, h))): no outer
  residual. (The head wiring itself is checked against the official forward in
  test_hashing_fidelity.)"""
  from flax import nnx
  icon = mh.ICON(64, rngs=nnx.Rngs(0))  # h = 16 heads of d = 4
  for layer in (icon.qkv, icon.qkv2):
    layer.kernel[...] = jnp.zeros_like(layer.kernel[...])
    layer.bias[...] = jnp.zeros_like(layer.bias[...])
  icon.eval()
  x = np.random.default_rng(4).normal(size=(2, 3, 3, 64)).astype(np.float32)
  permuted = x.reshape(2, 3, 3, 16, 4).swapaxes(-1, -2).reshape(x.shape)
  np.testing.assert_allclose(np.asarray(nnx.jit(lambda m, x: m(x))(icon, jnp.asarray(x))),
                             np.maximum(permuted / np.sqrt(1 + 1e-5), 0), rtol=1e-5, atol=1e-6)


def test_digits_retrieval_protocol():
  q = hashing_data.digits_retrieval(None, "query")
  db = hashing_data.digits_retrieval(None, "database")
  assert len(q.source) == 200 and len(db.source) == 1597
  np.testing.assert_array_equal(q.info["labels"].sum(0), np.full(10, 20))
  ex = q.source[3]
  np.testing.assert_array_equal(ex["labels"], q.info["labels"][3])
  qrows, dbrows = hashing_data.query_database_split(np.repeat(np.arange(3), 5), 2, seed=1)
  assert len(np.intersect1d(qrows, dbrows)) == 0 and len(qrows) == 6 and len(dbrows) == 9

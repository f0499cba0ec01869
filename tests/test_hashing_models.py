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
                                          width=8))
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


def test_outer_update_uses_visited_rows_only():
  """The task's jitted outer iteration equals the loss module's update on the visited rows."""
  c = ml_collections.ConfigDict(dict(batch_size=4, model=dict(bits=6),
                                     task=dict(name="adsh", gamma=50.0, outer_steps=2)))
  task = hashing_tasks.ADSH(c)
  rng = np.random.default_rng(3)
  n = 20
  labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
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
  u = np.asarray(extra["U"])[rows]
  s_soft = hl.soft_similarity(hl.similarity(labels[rows], labels), 0.3)
  ref = hl.discrete_update(extra["V"], u, np.asarray(s_soft).T @ u, rows, 50.0)
  np.testing.assert_array_equal(np.asarray(out["V"]), np.asarray(ref))
  assert int(out["outer"]) == 1 and not np.asarray(out["seen"]).any()
  assert not np.asarray(out["U"]).any()


def test_digits_retrieval_protocol():
  q = hashing_data.digits_retrieval(None, "query")
  db = hashing_data.digits_retrieval(None, "database")
  assert len(q.source) == 200 and len(db.source) == 1597
  np.testing.assert_array_equal(q.info["labels"].sum(0), np.full(10, 20))
  ex = q.source[3]
  np.testing.assert_array_equal(ex["labels"], q.info["labels"][3])
  qrows, dbrows = hashing_data.query_database_split(np.repeat(np.arange(3), 5), 2, seed=1)
  assert len(np.intersect1d(qrows, dbrows)) == 0 and len(qrows) == 6 and len(dbrows) == 9

"""DPCML with row-sharded user and item tables on 8 CPU devices (tests/conftest.py): the train step
(loss, gradients, Adam + norm projections) equals the one-device step, and the compiled step never
gathers a table or a table-sized gradient onto one device (the HLO's collectives are checked). The
batch looks up far fewer rows than the tables hold, as at any real scale."""
import re

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import models
import optim
from ml_pipelines import tasks

USERS, ITEMS, DIM, C, BATCH, NEG = 256, 2048, 8, 3, 32, 4


def _step_fn():
  model = models.build("dpcml", num_users=USERS, num_items=ITEMS, dim=DIM, num_vectors=C)
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  task = tasks.get("metric_learning_recsys")(ml_collections.ConfigDict(
      {"task": {"name": "metric_learning_recsys", "reg": 10.0, "delta1": 0.05, "delta2": 0.25}}))
  tx = optim.build(ml_collections.ConfigDict(dict(
      name="adam", learning_rate=0.01, post_transforms=("norm_projections",))), 10)

  def step(params, opt_state, batch):
    def loss(p):
      return task.loss(nnx.merge(graphdef, nnx.State(p)), batch, None, None, 0)
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params, **aux["tx_args"])
    return optax.apply_updates(params, updates), opt_state, value, grads
  return params, tx, step


def _batch(seed):
  rng = np.random.default_rng(seed)
  return {"user": rng.integers(0, USERS, BATCH).astype(np.int32),
          "pos": rng.integers(0, ITEMS, BATCH).astype(np.int32),
          "neg": rng.integers(0, ITEMS, (BATCH, NEG)).astype(np.int32)}


def test_sharded_tables_match_one_device_and_never_gather_a_table():
  params, tx, step = _step_fn()
  mesh = Mesh(np.array(jax.devices()).reshape(1, 8), ("data", "fsdp"))
  table_sh = {"user_embeddings": NamedSharding(mesh, P("fsdp", None, None)),
              "item_embeddings": NamedSharding(mesh, P("fsdp", None))}
  opt_state = tx.init(params)
  opt_sh = optax.tree_map_params(tx, lambda _, s: s, opt_state, table_sh,
                                 transform_non_params=lambda _: NamedSharding(mesh, P()))
  batch_sh = NamedSharding(mesh, P(("data", "fsdp")))
  sharded = jax.jit(step, in_shardings=(table_sh, opt_sh, batch_sh),
                    out_shardings=(table_sh, opt_sh, NamedSharding(mesh, P()), table_sh))
  single = jax.jit(step)
  p1, s1 = params, opt_state
  p8, s8 = jax.device_put(params, table_sh), jax.device_put(opt_state, opt_sh)
  for t in range(3):
    batch = _batch(t)
    p1, s1, v1, g1 = single(p1, s1, batch)
    p8, s8, v8, g8 = sharded(p8, s8, jax.device_put(batch, batch_sh))
    np.testing.assert_allclose(v8, v1, rtol=1e-5)
    for k in params:
      np.testing.assert_allclose(g8[k], g1[k], rtol=1e-4, atol=1e-6, err_msg=k)
      np.testing.assert_allclose(p8[k], p1[k], rtol=1e-4, atol=1e-6, err_msg=k)
  assert p8["item_embeddings"].sharding.spec == P("fsdp", None)
  hlo = sharded.lower(p8, s8, jax.device_put(_batch(0), batch_sh)).compile().as_text()
  collectives = [line for line in hlo.splitlines()
                 if re.search(r"= \S+ (all-gather|all-to-all|collective-permute)\(", line)]
  assert collectives, "expected the id all-gather of the shard-local lookup"
  for line in collectives:
    shape = re.search(r"= \w+\[([\d,]*)\]", line).group(1)
    size = int(np.prod([int(d) for d in shape.split(",") if d])) if shape else 1
    assert size < min(ITEMS * DIM, USERS * C * DIM) // 2, f"a table-sized collective: {line[:200]}"

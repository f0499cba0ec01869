"""DPCML against the official statusrank/DPCML code (fixtures from
tests/fixtures/dpcml/make_dpcml_fixtures.py): loss, DCRS, the item renorm and user projection after
1 and 10 Adam steps through our optax chain with the `norm_projections` post transform; the ranking
evaluator on a score matrix with ties."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import models
from models import dpcml
import optim
from losses import recsys as losses
from ml_pipelines import tasks
from ml_pipelines.evaluators.ranking import ranking_metrics

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "dpcml", "dpcml_reference.npz"))
K, DIM = 3, 4


def _config(**task):
  return ml_collections.ConfigDict({"task": {"name": "metric_learning_recsys", "margin": 1.0,
                                             "reg": 10.0, "delta1": 0.1, "delta2": 0.35, **task}})


@pytest.mark.parametrize("name", ["dpcml1", "dpcml2"])
def test_ten_adam_steps_match_the_official_training_step(name):
  users0 = REF[f"{name}/user0"]
  model = models.build("dpcml", num_users=len(users0), num_items=len(REF[f"{name}/item0"]),
                       dim=DIM, num_vectors=K)
  params = {"user_embeddings": jnp.asarray(users0.reshape(-1, K, DIM)),
            "item_embeddings": jnp.asarray(REF[f"{name}/item0"])}
  task = tasks.get("metric_learning_recsys")(_config())
  tx = optim.build(ml_collections.ConfigDict(dict(
      name="adam", learning_rate=0.01, post_transforms=("norm_projections",))), 10)
  graphdef, _ = nnx.split(model)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss(params):
      m = nnx.merge(graphdef, nnx.State(params))
      value, aux = task.loss(m, batch, None, None, 0)
      return value, aux
    (_, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params, **aux["tx_args"])
    return optax_apply(params, updates), opt_state, aux["metrics"]

  for t in range(10):
    batch = {k: jnp.asarray(REF[f"{name}/{f}"][t]) for k, f in
             (("user", "users"), ("pos", "pos"), ("neg", "neg"))}
    params, opt_state, metrics = step(params, opt_state, batch)
    np.testing.assert_allclose(metrics["hinge"], REF[f"{name}/preference"][t], rtol=1e-4,
                               atol=1e-4, err_msg=f"step {t + 1}")
    np.testing.assert_allclose(metrics["dcrs"], REF[f"{name}/regulariser"][t], rtol=1e-4,
                               atol=1e-5, err_msg=f"step {t + 1}")
    if t + 1 in (1, 10):
      np.testing.assert_allclose(params["user_embeddings"].reshape(len(users0), -1),
                                 REF[f"{name}/user{t + 1}"], atol=2e-5, err_msg=f"step {t + 1}")
      np.testing.assert_allclose(params["item_embeddings"], REF[f"{name}/item{t + 1}"],
                                 atol=2e-5, err_msg=f"step {t + 1}")
  norms = np.linalg.norm(params["user_embeddings"], axis=-1)
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # projected onto the sphere


def optax_apply(params, updates):
  import optax
  return optax.apply_updates(params, updates)


def test_diversity_barrier_paper_form_by_brute_force():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(5, 3, 4)) * 0.3
  d = ((u[:, :, None] - u[:, None]) ** 2).sum(-1)
  mean = d.sum((1, 2)) / (2 * 3 * 2)
  want = np.mean(np.maximum(0.1 - mean, 0) + np.maximum(mean - 0.35, 0))
  np.testing.assert_allclose(losses.diversity_barrier(jnp.asarray(u), 0.1, 0.35, per_pair=False),
                             want, rtol=1e-5)
  off = 1 - np.eye(3)
  want = np.mean(np.maximum((0.1 - d) * off, 0)) + np.mean(np.maximum((d - 0.35) * off, 0))
  np.testing.assert_allclose(losses.diversity_barrier(jnp.asarray(u), 0.1, 0.35), want,
                             rtol=1e-5)


def test_evaluator_matches_the_official_on_ties():
  got = ranking_metrics(REF["eval/scores"], REF["eval/train_mask"], REF["eval/test_mask"],
                        ks=(3, 5))
  for key in ("P@3", "R@3", "NDCG@3", "P@5", "R@5", "NDCG@5", "MAP", "MRR", "AUC", "NDCG"):
    np.testing.assert_allclose(got[key], REF[f"eval/{key}"], rtol=1e-6, err_msg=key)


def test_sharded_top_k_candidates_give_the_full_ranking_metrics():
  from ml_pipelines.tasks.recsys import top_k_metrics
  model = models.build("dpcml", num_users=20, num_items=64, dim=4, num_vectors=2)
  users = jnp.arange(20, dtype=jnp.int32)
  scores = np.asarray(model.scores(users))
  scores = np.round(scores, 1)  # ties
  model_scores = jnp.asarray(scores)
  values, ids = jax.jit(dpcml.top_k_by_blocks, static_argnums=(1, 2))(model_scores, 12, 4)
  want = np.argsort(-scores, axis=1, kind="stable")[:, :12]
  np.testing.assert_array_equal(ids, want)
  rng = np.random.default_rng(0)
  train = rng.random((20, 64)) < 0.1
  test = (rng.random((20, 64)) < 0.2) & ~train
  full = ranking_metrics(scores, train, test, ks=(3, 5))
  values, ids = dpcml.top_k_by_blocks(model_scores, int(train.sum(1).max()) + 5, 4)
  got = top_k_metrics(np.asarray(values), np.asarray(ids), train, test, (3, 5))
  for k in ("P@3", "R@5", "NDCG@5"):
    np.testing.assert_allclose(got[k], full[k], err_msg=k)
  with pytest.raises(ValueError, match="too few"):
    top_k_metrics(np.asarray(values)[:, :5], np.asarray(ids)[:, :5], train, test, (3, 5))


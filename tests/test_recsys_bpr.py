"""The MF-BPR baseline of configs/recsys/dpcml.py (`mf_bpr`): the BPR loss with L2 on the looked-up
rows and its gradient against a NumPy loop over triplets (LearnBPR's per-triplet gradient, Rendle
et al., UAI 2009), and the config training through the trainer raises validation AUC over the
initial model's."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import models
from ml_pipelines import tasks, train
from ml_pipelines.data import recsys
from ml_pipelines.evaluators.ranking import ranking_metrics
from ml_pipelines.trainer import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS, ITEMS, DIM, BATCH, L2 = 6, 9, 4, 5, 0.03


def _numpy_loss_and_grads(p, q, user, pos, neg):
  """Σ over (u, i, j) of -log σ(p_u·(q_i - q_j)) + (λ/2)(|p_u|² + |q_i|² + |q_j|²), looped."""
  loss, gp, gq = 0.0, np.zeros_like(p), np.zeros_like(q)
  for b in range(len(user)):
    for j in np.atleast_1d(neg[b]):
      u, i = user[b], pos[b]
      x = p[u] @ (q[i] - q[j])
      loss += np.log1p(np.exp(-x)) + L2 / 2 * (p[u] @ p[u] + q[i] @ q[i] + q[j] @ q[j])
      g = -1.0 / (1.0 + np.exp(x))  # d(-log σ(x))/dx
      gp[u] += g * (q[i] - q[j]) + L2 * p[u]
      gq[i] += g * p[u] + L2 * q[i]
      gq[j] += -g * p[u] + L2 * q[j]
  return loss, gp, gq


@pytest.mark.parametrize("negatives", [1, 3])
def test_bpr_loss_and_gradient_match_a_numpy_loop(negatives):
  rng = np.random.default_rng(negatives)
  model = models.build("matrix_factorization", num_users=USERS, num_items=ITEMS, dim=DIM,
                       init_std=0.5)
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)
  shape = (BATCH,) if negatives == 1 else (BATCH, negatives)
  batch = {"user": rng.integers(0, USERS, BATCH), "pos": rng.integers(0, ITEMS, BATCH),
           "neg": rng.integers(0, ITEMS, shape)}
  task = tasks.get("bpr_recsys")(ml_collections.ConfigDict({"task": {"name": "bpr_recsys",
                                                                      "l2": L2}}))

  def loss(p):
    return task.loss(nnx.merge(graphdef, nnx.State(p)), batch, None, None, 0)[0]
  value, grads = jax.value_and_grad(loss)(params)
  ref, gp, gq = _numpy_loss_and_grads(np.asarray(params["user_embeddings"], np.float64),
                                      np.asarray(params["item_embeddings"], np.float64),
                                      batch["user"], batch["pos"], batch["neg"])
  np.testing.assert_allclose(value, ref, rtol=1e-5)
  np.testing.assert_allclose(grads["user_embeddings"], gp, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads["item_embeddings"], gq, rtol=1e-4, atol=1e-6)


def test_mf_bpr_config_training_raises_auc_over_the_initial_model(tmp_path):
  c = config_lib.load(os.path.join(ROOT, "configs/recsys/dpcml.py") + ":multi_interest,mf_bpr")
  for k, v in {"data.num_users": 256, "data.num_items": 200, "model.num_users": 256,
               "model.num_items": 200, "model.dim": 16, "total_steps": 60, "eval_every": 0,
               "checkpoint_every": 0, "eval_batch_size": 64,
               "optimizer.learning_rate": 0.01}.items():
    config_lib.override(c, [f"{k}={v!r}"])
  result = train.train_and_evaluate(c, str(tmp_path))
  val = recsys.multi_interest_set(c.data, "val")
  users = jnp.asarray(val.info["test_mask"].any(1).nonzero()[0])
  initial = models.build(c.model, seed=c.seed).scores(users)
  before = ranking_metrics(initial, val.info["train_mask"][users], val.info["test_mask"][users])
  assert result["eval/AUC"] > before["AUC"] + 0.15, (result["eval/AUC"], before["AUC"])

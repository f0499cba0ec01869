"""RCPMOD with more than two views (official `run.py`: every pair of views trained and scored on
the samples having one of its views, the scores averaged over pairs): against the official code in
float64 on three views (fixture from tests/fixtures/rcpmod/make_rcpmod_pairs_fixture.py), and the
pairs trained one stage each through the trainer."""
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from configs.outlier import rcpmod as rcpmod_config
from ml_pipelines import train
from ml_pipelines.data import multiview
from ml_pipelines.evaluators.outlier import roc_auc
from ml_pipelines.tasks import outlier as outlier_task

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "rcpmod",
                           "rcpmod_pairs_reference.npz"))


def _official_model():
  model = models.build("rcpmod", archs=((5, 16, 4), (7, 16, 4), (6, 16, 4)))
  nnx.update(model, jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), nnx.state(model)))
  for v, ae in enumerate(model.views):  # the fixture stores view v's state dict under "ae{v}/"
    ae.load_torch({k[len(f"ae{v}/"):]: REF[k] for k in REF.files if k.startswith(f"ae{v}/")})
  return model


def test_three_views_match_the_official_pairs_and_their_mean():
  with jax.enable_x64():
    model = _official_model()
    present = REF["mask"] == 1
    xs = [REF[f"x{v}"] * present[:, v:v + 1] for v in range(3)]  # missing rows zeroed
    z, e = [], []
    for ae, x in zip(model.views, xs):
      recon, latent = ae(jnp.asarray(x))
      z.append(np.asarray(latent))
      e.append(np.asarray(jnp.sum((recon - x) ** 2, -1)))
    pairs = list(itertools.combinations(range(3), 2))
    scores = np.zeros((len(xs[0]), len(pairs)))
    for i, (a, b) in enumerate(pairs):
      knn = multiview.pair_knn_tables(xs[a], xs[b], present[:, a], present[:, b], k=6)
      flag = REF[f"pair{i}/flag"]
      np.testing.assert_array_equal(flag, np.flatnonzero(present[:, a] | present[:, b]))
      for table, name in zip(knn, ("knn1", "knn2")):  # official tables number the pair's subset
        np.testing.assert_array_equal(table[flag], flag[REF[f"pair{i}/{name}"]])
      scores[:, i] = outlier_task.pair_outlier_scores(
          (z[a], z[b]), (e[a], e[b]), (present[:, a], present[:, b]), knn, 0.5, 0.25)
      np.testing.assert_allclose(scores[:, i], REF["pair_scores"][:, i], rtol=1e-9, atol=1e-12,
                                 err_msg=f"pair {(a, b)}")
    covered = np.stack([present[:, a] | present[:, b] for a, b in pairs], 1)
    assert not covered.all()  # some samples have one view only: not every pair covers them
    np.testing.assert_allclose(outlier_task.mean_over_pairs(scores, covered), REF["scores"],
                               rtol=1e-9, atol=1e-12)


def test_three_view_config_trains_the_pairs_one_stage_each(tmp_path):
  c = rcpmod_config.get_config("generated3,contrastive")  # no memory or kNN terms: cheaper
  assert [s["name"] for s in c.stages] == ["views_0_1", "views_0_2", "views_1_2"]
  c.model.archs = ((20, 32, 8), (12, 32, 8), (16, 32, 8))
  c.batch_size, c.eval_batch_size = 200, 200
  c.stages = tuple(dict(s, steps=12) for s in c.stages)  # four epochs of three batches per pair
  c.total_steps, c.checkpoint_every, c.log_every = 36, 0, 36
  c.optimizer.learning_rate = 0.01
  c.task.update(dict(change_knn_epoch=1, change_neg_epoch=1, impute_from=1, neg_rank=10))
  out = train.train_and_evaluate(c, str(tmp_path))
  extra = out["state"]["extra"]
  a = multiview.outlier_view_arrays("generated", 0, (0.02, 0.05, 0.08), 0.3, 600, "", (0, 1, 2))
  stored = np.asarray(extra["pair_scores"])
  pair_auc = []
  for i, (u, v) in enumerate([(0, 1), (0, 2)]):  # kept when their stage ended
    covered = a[f"present{u + 1}"] | a[f"present{v + 1}"]
    assert (stored[covered, i] > 0).mean() > 0.99 and (stored[~covered, i] == 0).all()
    pair_auc.append(roc_auc(a["outlier"][covered], stored[covered, i]))
  assert (stored[:, 2] == 0).all()  # the last pair is scored by the evaluation itself
  assert int(extra["epoch"]) == 3  # the last pair's own epoch counter
  assert min(pair_auc) > 0.75, pair_auc
  assert out["eval/auc"] > max(pair_auc), (out["eval/auc"], pair_auc)  # the mean over pairs helps

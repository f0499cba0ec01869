"""RCPMOD trained end to end by the trainer on generated two-view data with injected outliers and
30% missing views: the fused score beats the reconstruction-only baseline in ROC-AUC, the memory
bank and the tables refresh as the official loop does, and a run interrupted mid-epoch resumes
bit-exactly (memory bank and tables included)."""
import jax
import numpy as np

from configs.outlier import rcpmod as rcpmod_config
from losses import outlier as ol
from ml_pipelines import train
from ml_pipelines.data import multiview
from ml_pipelines.tasks import outlier as outlier_task
from tests.test_trainer import interrupted

STEPS_PER_EPOCH = 6  # 600 samples, batch 96


def small(variant="rcpmod", epochs=6, **task):
  c = rcpmod_config.get_config("generated," + variant)
  c.model.archs = ((20, 64, 16), (12, 64, 16))
  c.batch_size, c.eval_batch_size = 96, 200
  c.total_steps = epochs * STEPS_PER_EPOCH
  c.eval_every = c.checkpoint_every = c.total_steps
  c.log_every = c.total_steps
  c.task.update(dict(change_knn_epoch=4, change_neg_epoch=2, impute_from=4, neg_rank=10))
  if variant == "rcpmod":
    c.task.update(dict(warmup_max=0.5, w2=0.5))
  c.task.update(task)
  return c


def test_fused_score_beats_reconstruction_only(tmp_path):
  full = train.train_and_evaluate(small(), str(tmp_path / "full"))
  recon = train.train_and_evaluate(small("recon_only"), str(tmp_path / "recon"))
  assert full["eval/auc"] > recon["eval/auc"] + 0.05, (full["eval/auc"], recon["eval/auc"])
  extra = full["state"]["extra"]
  assert int(extra["epoch"]) == 5  # refreshed at every epoch boundary
  assert int(extra["memory_count"]) == 5  # the FIFO holds the last memory_size batches
  assert int(extra["memory_next"]) == (6 * STEPS_PER_EPOCH) % 5


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_resume_mid_epoch_is_bit_exact(tmp_path):
  def cfg():
    c = small(epochs=4)
    c.checkpoint_every = 8
    return c
  ref = train.train_and_evaluate(cfg(), str(tmp_path / "ref"))
  interrupted(cfg(), tmp_path / "resumed", stop_after=11)  # newest checkpoint: step 8, epoch 1
  out = train.train_and_evaluate(cfg(), str(tmp_path / "resumed"))
  a, b = _flat(ref["state"]["extra"]), _flat(out["state"]["extra"])
  assert a.keys() == b.keys() and any("memory1" in k for k in a)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  a, b = _flat(train.Env.variables(ref["state"])[0]), _flat(train.Env.variables(out["state"])[0])
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert ref["eval/auc"] == out["eval/auc"]


def test_masked_losses_equal_the_losses_on_the_selected_rows():
  """The official code selects the rows having the view(s); the masked forms must agree."""
  rng = np.random.default_rng(0)
  h_i, h_j, x = (rng.normal(size=(10, 4)).astype(np.float32) for _ in range(3))
  m_i, m_j = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
  keep = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], bool)
  mem_keep = np.array([1, 1, 1, 0, 0, 0], bool)
  np.testing.assert_allclose(
      ol.nt_xent(h_i, h_j, memory=(m_i, m_j), valid=keep, memory_valid=mem_keep),
      ol.nt_xent(h_i[keep], h_j[keep], memory=(m_i[mem_keep], m_j[mem_keep])), rtol=1e-6)
  np.testing.assert_allclose(ol.triplet(h_i, h_j, x, where=keep),
                             ol.triplet(h_i[keep], h_j[keep], x[keep]), rtol=1e-6)
  np.testing.assert_allclose(ol.spreading(x, where=keep), ol.spreading(x[keep]), rtol=1e-6)


def test_warmup_weight_follows_the_official_ramp():
  w = [float(outlier_task.warmup_weight(e, 0.02, 0.2, 1000)) for e in (0, 50, 100, 550, 2000)]
  np.testing.assert_allclose(w, [0.0, 0.01, 0.02, 0.02 + 0.18 * 450 / 900, 0.2], rtol=1e-6)


def test_missing_view_mask_and_outliers():
  rng = np.random.default_rng(0)
  present = multiview.missing_view_mask(200, 0.3, rng)
  assert present.any(1).all() and (~present.all(1)).sum() == 60
  x1, x2 = np.full((40, 3), 0.5), np.arange(40 * 2, dtype=float).reshape(40, 2)
  labels = np.arange(40) % 4
  y1, y2, flags = multiview.inject_outliers(x1, x2, labels, 0.2, rng)
  assert flags.sum() == 8
  swapped = np.flatnonzero((y2 != x2).any(1))
  noisy = np.flatnonzero((y1 != x1).any(1))
  assert len(swapped) == 8 and len(noisy) == 4 and set(swapped) == set(np.flatnonzero(flags))
  # a swapped (class-outlier) row carries view 2 of a sample of another class
  for i in np.setdiff1d(swapped, noisy):
    j = int(y2[i, 0]) // 2
    assert labels[j] != labels[i]

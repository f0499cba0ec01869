"""RCPMOD trained end to end by the trainer on generated two-view data with injected outliers and
30% missing views: the fused score beats the reconstruction-only baseline in ROC-AUC, the memory
bank and the tables refresh as the official loop does, and a run interrupted mid-epoch resumes
bit-exactly (memory bank and tables included)."""
import jax
import numpy as np
import pytest

from configs.outlier import rcpmod as rcpmod_config
from losses import outlier as ol
from ml_pipelines import train
from ml_pipelines.data import multiview_outliers
from ml_pipelines.tasks import outlier as outlier_task
from tests.test_trainer import interrupted

STEPS_PER_EPOCH = 6  # 600 samples, batch 96


def small(variant="rcpmod", epochs=6, **task):
  c = rcpmod_config.get_config("generated," + variant)
  c.model.archs = ((20, 64, 16), (12, 64, 16))
  c.batch_size, c.eval_batch_size = 96, 200
  c.total_steps = epochs * STEPS_PER_EPOCH
  c.eval_every = c.log_every = c.total_steps
  c.checkpoint_every = 0
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
  assert a.keys() == b.keys() and any("memory" in k for k in a)
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


def test_missing_mask_keeps_a_view_and_the_official_rate():
  mask = multiview_outliers.missing_mask(2, 1000, 0.3, np.random.default_rng(0))
  assert mask.any(1).all() and abs(mask.mean() - 0.85) < 0.005
  mask = multiview_outliers.missing_mask(3, 600, 0.5, np.random.default_rng(1))
  assert mask.any(1).all() and abs(mask.mean() - (1 - 0.5 / 3)) < 0.005


def test_class_pairs_follow_the_official_rules():
  labels = np.array([0, 0, 1, 1, 2, 0])
  mask = np.array([[1, 1], [1, 1], [1, 1], [1, 0], [1, 1], [1, 1]], bool)
  # eligible (both views, different classes): {0, 1, 5} x {2, 4}
  for seed in range(5):
    pairs = multiview_outliers.class_pairs(labels, mask, 2, np.random.default_rng(seed))
    assert len(set(pairs.ravel())) == 4
    for a, b in pairs:
      assert labels[a] != labels[b] and mask[a].all() and mask[b].all() and a < b
  with pytest.raises(ValueError, match="disjoint pairs"):
    multiview_outliers.class_pairs(labels, mask, 3, np.random.default_rng(0))


def test_corruption_protocol_on_hand_made_views():
  n = 40
  x1 = np.tile(np.arange(n, dtype=float)[:, None], (1, 3)) / n  # row i: i / n in every column
  x2 = np.tile(np.arange(n, dtype=float)[:, None], (1, 2)) / n
  labels = np.arange(n) % 4
  (y1, y2), mask, flags, class_flags = multiview_outliers.corrupt(
      [x1, x2], labels, np.random.default_rng(3), missing_rate=0.3, class_rate=0.1,
      attribute_rate=0.1, attribute_class_rate=0.1)
  assert mask.any(1).all() and flags.sum() == 4 + 4 + 4 and class_flags.sum() == 4
  assert (y1[mask[:, 0] == 0] == 0).all() and (y2[mask[:, 1] == 0] == 0).all()
  for y in (y1, y2):  # every view min-max normalised
    assert y.min() == 0 and y.max() == 1
  # class outliers: view 1 or view 2 swapped with a sample of another class, the other view intact
  # up to the final normalisation (a monotone map: constant rows stay constant)
  for i in np.flatnonzero(class_flags):
    assert np.ptp(y1[i]) == 0 and np.ptp(y2[i]) == 0
  # attribute and class-attribute outliers carry noise in at least one present view
  noisy = flags & ~class_flags
  rough = (np.ptp(y1, 1) > 0) | (np.ptp(y2, 1) > 0)
  assert (rough[noisy == 1]).all() and not rough[flags == 0].any()
  # inliers keep their own values (up to the normalisation): the order of the rows is kept
  inl = np.flatnonzero((flags == 0) & (mask[:, 0] == 1))
  assert (np.diff(y1[inl, 0]) > 0).all()

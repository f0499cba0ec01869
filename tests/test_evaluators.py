"""Evaluators against scikit-learn, ports of the official evaluation loops, and hand-computed
examples (ties, ignored pixels, junk gallery samples, masked training items, classes without
positives). NumPy only; the whole module runs in a few seconds."""
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from ml_pipelines.evaluators import classification, continual, multilabel, outlier, ranking, reid
from ml_pipelines.evaluators import retrieval as rm
from ml_pipelines.evaluators import segmentation

# --------------------------------------------------------------------------------------------------
# retrieval
# 4-bit database and queries; labels A, B, C multi-hot.
DB = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 1, 1, 1], [0, 0, 1, 1]])
DB_LABELS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]])
Q = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]])
Q_LABELS = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0]])
# Stable rankings: q0 -> 0,1,2,4,3 (db1/db2 tie at 1: db1 first), relevant at ranks 1,3,5;
# q1 has no relevant item; q2 -> all relevant; q3 -> 0,3,1,2,4, relevant at ranks 1,2,4.
AP = [(1 + 2 / 3 + 3 / 5) / 3, 0.0, 1.0, (1 + 1 + 3 / 4) / 3]


def test_map_with_ties_and_no_relevant_queries():
  assert rm.mean_average_precision(Q, DB, Q_LABELS, DB_LABELS) == pytest.approx(np.mean(AP))
  assert rm.mean_average_precision(2 * Q - 1, 2 * DB - 1, Q_LABELS, DB_LABELS) == pytest.approx(
      np.mean(AP))
  # top 2: q0 sees [rel, not rel] -> AP 1; q3 [rel, rel] -> 1.
  assert rm.mean_average_precision(Q, DB, Q_LABELS, DB_LABELS, topk=2) == pytest.approx(0.75)


def test_precision_recall_at_radius_with_empty_ball():
  # r = 1: q0 ball {0,1,2}: P 2/3 R 2/3; q1 ball {3}, nothing relevant: 0, 0; q2 ball {1,2,4}:
  # P 1 R 3/5;
  # q3 empty ball: 0, 0.
  p, r = rm.precision_recall_at_radius(Q, DB, Q_LABELS, DB_LABELS, radius=1)
  assert p == pytest.approx((2 / 3 + 1) / 4)
  assert r == pytest.approx((2 / 3 + 3 / 5) / 4)


def test_precision_recall_curve_and_plot(tmp_path):
  p, r, cutoffs = rm.precision_recall_curve(Q, DB, Q_LABELS, DB_LABELS, num_points=5)
  np.testing.assert_array_equal(cutoffs, [1, 2, 3, 4, 5])
  np.testing.assert_allclose(p, [1, 2.5 / 3, (2 / 3 + 1 + 2 / 3) / 3, 0.75, 2.2 / 3])
  np.testing.assert_allclose(r, [(2 / 3 + 0.2) / 3, (1 / 3 + 0.4 + 2 / 3) / 3, (4 / 3 + 0.6) / 3,
                                 (2 / 3 + 1.8) / 3, 1])
  rm.plot_precision_recall({"toy": (p, r)}, tmp_path / "pr.png")
  assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"


def test_map_matches_loop_reference_on_random_codes():
  rng = np.random.default_rng(0)
  db, q = rng.integers(0, 2, (300, 12)), rng.integers(0, 2, (20, 12))
  db_y, q_y = rng.integers(0, 5, 300), rng.integers(0, 6, 20)  # class 5 has no database item
  aps = []
  for i in range(20):
    d = [int((q[i] != db[j]).sum()) for j in range(300)]
    order = sorted(range(300), key=lambda j: (d[j], j))[:100]
    hits, s = 0, 0.0
    for rank, j in enumerate(order, 1):
      if db_y[j] == q_y[i]:
        hits += 1
        s += hits / rank
    aps.append(s / hits if hits else 0.0)
  assert rm.mean_average_precision(q, db, q_y, db_y, topk=100) == pytest.approx(np.mean(aps))


# --------------------------------------------------------------------------------------------------
# classification

def test_classification_matches_sklearn():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 7, 200)  # classes 7 (predicted only) and 8 (nowhere) have no sample
  predicted = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 8, 200))
  scores = rng.normal(size=(200, 9))
  cm = classification.confusion_matrix(labels, predicted, 9)
  np.testing.assert_array_equal(cm, skm.confusion_matrix(labels, predicted, labels=range(9)))
  assert classification.accuracy(labels, predicted) == pytest.approx(
      skm.accuracy_score(labels, predicted))
  for k in (1, 3, 5):
    assert classification.top_k_accuracy(labels, scores, k) == pytest.approx(
        skm.top_k_accuracy_score(labels, scores, k=k, labels=range(9)))
  recall = classification.per_class_recall(cm)
  np.testing.assert_allclose(
      recall[:7], skm.recall_score(labels, predicted, labels=range(7), average=None))
  assert np.isnan(recall[7:]).all()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn warns about class 7 (predicted, never true)
    assert classification.mean_class_recall(cm) == pytest.approx(
        skm.balanced_accuracy_score(labels, predicted))
  assert classification.macro_f1(cm) == pytest.approx(
      skm.f1_score(labels, predicted, average="macro"))


def test_top_k_ties_count_for_the_label_and_head_tail_recall():
  # ties: label 0 scores 1.0 like class 1 -> rank 0 (top-1 hit); label 2 is below two -> top-3.
  scores = np.array([[1.0, 1.0, 0.0], [0.5, 0.7, 0.1]])
  assert classification.top_k_accuracy([0, 2], scores, k=1) == 0.5
  assert classification.top_k_accuracy([0, 2], scores, k=2) == 0.5
  assert classification.top_k_accuracy([0, 2], scores, k=3) == 1.0
  # recall per class: 4/5, 1/2, 0/1, 1/2; tail = [2, 3].
  labels = [0, 0, 0, 0, 0, 1, 1, 2, 3, 3]
  predicted = [0, 0, 0, 0, 1, 1, 0, 0, 3, 2]
  report = classification.classification_report(labels, predicted, 4, tail_classes=[2, 3])
  assert report["head_recall"] == pytest.approx((0.8 + 0.5) / 2)
  assert report["tail_recall"] == pytest.approx(0.25)
  assert report["accuracy"] == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------------
# multi-label mAP

def _official_pvp_average_precision(output, target):
  """TaI-DPT / PVP ``dassl/evaluation/evaluator.py::average_precision``, verbatim but for names."""
  indices = output.argsort()[::-1]
  total_count = np.cumsum(np.ones((len(output), 1)))
  target_ = target[indices]
  ind = target_ == 1
  pos_count = np.cumsum(ind)
  total = pos_count[-1]
  pos_count[np.logical_not(ind)] = 0
  return np.sum(pos_count / total_count) / (total + 1e-8)


def test_multilabel_map_matches_sklearn_with_ties_and_an_empty_class():
  rng = np.random.default_rng(2)
  targets = (rng.random((60, 5)) < 0.3).astype(int)
  targets[:, 4] = 0  # no positive: skipped
  scores = np.round(rng.random((60, 5)), 1)  # many ties
  ap = multilabel.average_precision_per_class(targets, scores)
  expected = [skm.average_precision_score(targets[:, c], scores[:, c]) for c in range(4)]
  np.testing.assert_allclose(ap[:4], expected)
  assert np.isnan(ap[4])
  assert multilabel.mean_average_precision(targets, scores) == pytest.approx(np.mean(expected))


def test_multilabel_map_equals_official_pvp_code_on_voc_style_targets():
  rng = np.random.default_rng(3)
  targets = rng.choice([-1, 0, 1], size=(50, 4), p=[0.6, 0.1, 0.3])  # 0 = VOC "difficult": negative
  scores = rng.normal(size=(50, 4))  # distinct: the official tie order does not matter
  official = np.mean([_official_pvp_average_precision(scores[:, c], targets[:, c])
                      for c in range(4)])
  assert multilabel.mean_average_precision(targets, scores) == pytest.approx(official, abs=1e-7)


def _voc07_eleven_point(positive, scores):
  """PASCAL VOC devkit's ``voc_ap(rec, prec, use_07_metric=True)`` on the ranked list."""
  tp = np.cumsum(positive[np.argsort(-scores)])
  rec, prec = tp / tp[-1], tp / np.arange(1, len(tp) + 1)
  ap = 0.0
  for t in np.arange(0.0, 1.1, 0.1):
    ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) else 0.0) / 11.0
  return ap


def test_eleven_point_ap_by_hand_and_against_devkit_loop():
  # ranked targets 1,0,1,0: P at positives 1, 2/3 -> AP (1 + 2/3) / 2; 11-point: recall levels
  # 0..0.5 reach precision 1, levels 0.6..1 reach 2/3.
  scores = np.array([[0.9], [0.8], [0.7], [0.6]])
  targets = np.array([[1], [0], [1], [0]])
  assert multilabel.mean_average_precision(targets, scores) == pytest.approx(5 / 6)
  assert multilabel.mean_average_precision(targets, scores, eleven_point=True) == pytest.approx(
      (6 + 5 * 2 / 3) / 11)
  rng = np.random.default_rng(4)
  targets, scores = rng.random((80, 3)) < 0.2, rng.normal(size=(80, 3))
  np.testing.assert_allclose(
      multilabel.average_precision_per_class(targets, scores, eleven_point=True),
      [_voc07_eleven_point(targets[:, c], scores[:, c]) for c in range(3)])


# --------------------------------------------------------------------------------------------------
# segmentation

def test_segmentation_accumulates_batches_like_jaccard_score():
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 5, (3, 2, 8, 8))  # 3 batches of 2 images; class 5 never labelled ...
  labels[rng.random(labels.shape) < 0.2] = 255
  predicted = np.where(rng.random(labels.shape) < 0.5, labels % 255,
                       rng.integers(0, 5, labels.shape))
  predicted[0, 0, 0, 0] = 5  # ... but predicted once (on a labelled pixel): IoU 0; class 6: NaN
  labels[0, 0, 0, 0] = 1
  cm = np.zeros((7, 7), np.int64)
  for b in range(3):
    cm = segmentation.update(cm, labels[b], predicted[b])
  valid = labels != 255
  y, p = labels[valid], predicted[valid]
  np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=range(7)))
  iou = segmentation.iou_per_class(cm)
  np.testing.assert_allclose(iou[:6], skm.jaccard_score(y, p, labels=range(6), average=None))
  assert iou[5] == 0 and np.isnan(iou[6])
  report = segmentation.segmentation_report(cm, tail_classes=[4, 5, 6])
  assert report["mIoU"] == pytest.approx(np.mean(iou[:6]))
  assert report["pixel_accuracy"] == pytest.approx(skm.accuracy_score(y, p))
  assert report["mIoU_head"] == pytest.approx(np.mean(iou[:4]))
  assert report["mIoU_tail"] == pytest.approx(np.mean(iou[4:6]))


# --------------------------------------------------------------------------------------------------
# re-ID

def _distmat_from_orders(orders, num_gallery):
  dist = np.zeros((len(orders), num_gallery))
  for q, order in enumerate(orders):
    dist[q, order] = np.arange(num_gallery)
  return dist


# gallery (pid, cam); queries q0 (pid 1, cam 1), q1 (pid 2, cam 3), q2 (pid 4: not in the gallery).
G_PIDS, G_CAMS = np.array([1, 1, 2, 2, 3, 1]), np.array([1, 2, 1, 2, 2, 1])
Q_PIDS, Q_CAMS = np.array([1, 2, 4]), np.array([1, 3, 1])
REID_DIST = _distmat_from_orders([[0, 2, 3, 1, 4, 5], [3, 4, 2, 0, 1, 5], [0, 1, 2, 3, 4, 5]], 6)


def test_reid_camera_filter_by_hand():
  # standard: q0 drops g0, g5 (same id, same camera) -> g2 g3 g1 g4, match at rank 3: AP, INP 1/3;
  # q1 keeps all -> g3 g4 g2 g0 g1 g5, matches at 1 and 3: AP (1 + 2/3) / 2, INP 2/3; q2 skipped.
  out = reid.reid_metrics(REID_DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, ranks=(1, 2, 3))
  assert out == pytest.approx({"rank-1": 0.5, "rank-2": 0.5, "rank-3": 1.0,
                               "mAP": (1 / 3 + 5 / 6) / 2, "mINP": (1 / 3 + 2 / 3) / 2})
  # SYSU: q1 (camera 3) also drops every camera-2 sample -> g2 g0 g5: AP 1, INP 1; the CMC counts
  # identities once, so q0's list 2, 2, 1, 3 becomes 2, 1: first match at rank 2.
  out = reid.reid_metrics(REID_DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, protocol="sysu", ranks=(1, 2))
  assert out == pytest.approx({"rank-1": 0.5, "rank-2": 1.0, "mAP": (1 / 3 + 1) / 2,
                               "mINP": (1 / 3 + 1) / 2})
  # no cameras (RegDB): q0 keeps g0 and g5 -> matches at 1, 4, 6: AP (1 + 2/4 + 3/6) / 3, INP 3/6.
  out = reid.reid_metrics(REID_DIST, Q_PIDS, G_PIDS, ranks=(1,))
  assert out == pytest.approx({"rank-1": 1.0, "mAP": (2 / 3 + 5 / 6) / 2,
                               "mINP": (0.5 + 2 / 3) / 2})


def _official_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, sysu):
  """SGIEL ``eval_metrics.py``: ``eval_sysu`` (sysu=True) or the ``eval_vcm`` camera rule, with the
  loops as in the official code (stable argsort for reproducible ties)."""
  indices = np.argsort(distmat, axis=1, kind="stable")
  pred_label = g_pids[indices]
  matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
  all_cmc, all_ap, all_inp = [], [], []
  for q_idx in range(len(q_pids)):
    order = indices[q_idx]
    if sysu:
      remove = (q_camids[q_idx] == 3) & (g_camids[order] == 2)
    else:
      remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
    keep = np.invert(remove)
    orig_cmc = matches[q_idx][keep]
    if not np.any(orig_cmc):
      continue
    if sysu:
      new_cmc = pred_label[q_idx][keep]
      new_index = np.unique(new_cmc, return_index=True)[1]
      new_cmc = np.array([new_cmc[index] for index in sorted(new_index)])
      cmc = (new_cmc == q_pids[q_idx]).astype(np.int32).cumsum()
    else:
      cmc = orig_cmc.cumsum()
    all_cmc.append(np.minimum(cmc, 1)[:max_rank])
    pos_max_idx = np.max(np.where(orig_cmc == 1))
    all_inp.append(orig_cmc.cumsum()[pos_max_idx] / (pos_max_idx + 1.0))
    tmp = np.asarray([x / (i + 1.) for i, x in enumerate(orig_cmc.cumsum())]) * orig_cmc
    all_ap.append(tmp.sum() / orig_cmc.sum())
  return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp)


@pytest.mark.parametrize("protocol", ["standard", "sysu"])
def test_reid_matches_official_loops_on_random_data(protocol):
  rng = np.random.default_rng(6)
  g_pids, g_cams = rng.integers(0, 12, 80), rng.choice([1, 2, 4, 5], 80)
  q_pids, q_cams = rng.integers(0, 14, 40), rng.choice([3, 6], 40)  # ids 12, 13: no match
  if protocol == "standard":
    q_cams = rng.choice([1, 2, 4, 5], 40)
  dist = np.round(rng.random((40, 80)), 2)  # ties
  cmc, m_ap, m_inp = _official_eval_sysu(dist, q_pids, g_pids, q_cams, g_cams, 20,
                                         protocol == "sysu")
  ranks = range(1, len(cmc) + 1)  # SYSU's CMC over the 12 gallery identities has 12 entries
  out = reid.reid_metrics(dist, q_pids, g_pids, q_cams, g_cams, protocol=protocol, ranks=ranks)
  np.testing.assert_allclose([out[f"rank-{k}"] for k in ranks], cmc)
  assert (out["mAP"], out["mINP"]) == pytest.approx((m_ap, m_inp))


# --------------------------------------------------------------------------------------------------
# recommendation ranking

def _official_dpcml(scores, train, test, ks, min_test):
  """DPCML ``evaluate.py``: ``precision_recall_ndcg_k`` and ``map_mrr_auc_ndcg`` loops (ranking by a
  stable sort of -score instead of ``torch.topk``)."""
  out = {}
  for k in ks:
    p, r, n = [], [], []
    for u in range(len(scores)):
      test_set, train_set = set(np.flatnonzero(test[u])), set(np.flatnonzero(train[u]))
      if len(test_set) < k:
        continue
      idcg = sum(1.0 / np.log2(pos + 2) for pos in range(k))
      new_set = [v for v in np.argsort(-scores[u], kind="stable") if v not in train_set][:k]
      hits = [idx for idx, v in enumerate(new_set) if v in test_set]
      p.append(len(hits) / k)
      r.append(len(hits) / len(test_set))
      n.append(sum(1.0 / np.log2(idx + 2) for idx in hits) / idcg)
    out.update({f"P@{k}": np.mean(p), f"R@{k}": np.mean(r), f"NDCG@{k}": np.mean(n)})
  m_ap, mrr, auc, ndcg = [], [], [], []
  for u in range(len(scores)):
    test_set, train_set = set(np.flatnonzero(test[u])), set(np.flatnonzero(train[u]))
    if len(test_set) < min_test:
      continue
    new_set = [v for v in np.argsort(-scores[u], kind="stable") if v not in train_set]
    idcg = sum(1.0 / np.log2(pos + 2) for pos in range(len(test_set)))
    hits = [idx for idx, v in enumerate(new_set) if v in test_set]
    m_ap.append(sum((j + 1.0) / (idx + 1) for j, idx in enumerate(hits)) / len(hits)
                if hits else 0.)
    ndcg.append(sum(1.0 / np.log2(idx + 2) for idx in hits) / idcg if hits else 0.)
    mrr.append(1 / (hits[0] + 1) if hits else 0.)
    labels, big_k = [1 if v in test_set else 0 for v in new_set], len(test_set)
    if len(labels) <= big_k:
      auc.append(1)
    else:
      s = sum(label * (i + 1) for i, label in enumerate(labels[::-1]))
      auc.append((s - big_k * (big_k + 1) / 2) / (big_k * (len(labels) - big_k)))
  out.update({"MAP": np.mean(m_ap), "MRR": np.mean(mrr), "AUC": np.mean(auc),
              "NDCG": np.mean(ndcg)})
  return out


def _interactions(rng, users, items):
  train = rng.random((users, items)) < 0.3
  test = ~train & (rng.random((users, items)) < 0.25)
  test[:3] &= rng.random((3, items)) < 0.05  # a few users with fewer than 3 or 5 test items
  return train, test


def test_ranking_matches_sklearn_per_user():
  rng = np.random.default_rng(7)
  scores = rng.normal(size=(25, 40))
  train, test = _interactions(rng, 25, 40)
  out = ranking.ranking_metrics(scores, train, test, ks=(3, 5))
  for k in (3, 5):
    users = [u for u in range(25) if test[u].sum() >= k]
    expected = [skm.ndcg_score(test[u][~train[u]][None], scores[u][~train[u]][None], k=k)
                for u in users]
    assert out[f"NDCG@{k}"] == pytest.approx(np.mean(expected))
  users = [u for u in range(25) if test[u].sum() >= 3]
  y = [(test[u][~train[u]], scores[u][~train[u]]) for u in users]
  assert out["MAP"] == pytest.approx(np.mean([skm.average_precision_score(t, s) for t, s in y]))
  assert out["AUC"] == pytest.approx(np.mean([skm.roc_auc_score(t, s) for t, s in y]))
  assert out["NDCG"] == pytest.approx(np.mean([skm.ndcg_score(t[None], s[None]) for t, s in y]))


def test_ranking_matches_official_dpcml_loops_with_ties_and_train_test_overlap():
  rng = np.random.default_rng(8)
  scores = np.round(rng.normal(size=(30, 24)), 1)  # ties
  train, test = _interactions(rng, 30, 24)
  test[5:8] |= train[5:8] & (rng.random((3, 24)) < 0.5)  # test items also in train: filtered out
  test[9, :] = ~train[9]  # every remaining item is a test item: AUC 1
  expected = _official_dpcml(scores, train, test, (3, 5), 3)
  out = ranking.ranking_metrics(scores, train, test, ks=(3, 5))
  assert out == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------
# outlier detection

def test_outlier_roc_auc_matches_sklearn_with_ties():
  rng = np.random.default_rng(9)
  labels = rng.random(300) < 0.1
  scores = np.round(rng.normal(size=300) + 1.5 * labels, 1)
  assert outlier.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
  assert outlier.roc_auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.3]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


# --------------------------------------------------------------------------------------------------
# continual learning

# acc[i, j]: accuracy on task j after training task i.
ACC = np.array([[0.9, 0.1, 0.0],
                [0.7, 0.8, 0.2],
                [0.6, 0.7, 0.95]])


def test_continual_metrics_on_a_hand_written_matrix():
  # per-stage accuracy on seen tasks: 0.9, (0.7 + 0.8) / 2, (0.6 + 0.7 + 0.95) / 3.
  assert continual.average_incremental_accuracy(ACC) == pytest.approx((0.9 + 0.75 + 0.75) / 3)
  # test-set sizes 100, 300, 100: stage 1 (70 + 240) / 400, stage 2 (60 + 210 + 95) / 500.
  assert continual.average_incremental_accuracy(ACC, [100, 300, 100]) == pytest.approx(
      (0.9 + 0.775 + 0.73) / 3)
  assert continual.final_average_accuracy(ACC) == pytest.approx(0.75)
  # forgetting: task 0 max(0.9, 0.7) - 0.6 = 0.3; task 1 max(0.1, 0.8) - 0.7 = 0.1.
  assert continual.forgetting(ACC) == pytest.approx(0.2)
  # CL_Pytorch's cal_avg_forgetting on its transposed matrix gives the same number.
  curve, t = ACC.T, 2
  assert continual.forgetting(ACC) == pytest.approx(
      (curve[:t, :t].max(axis=1) - curve[:t, t]).mean())
  assert continual.backward_transfer(ACC) == pytest.approx(((0.6 - 0.9) + (0.7 - 0.8)) / 2)
  # part-way through (two stages of three tasks) and after the first task.
  assert continual.continual_report(ACC[:2]) == pytest.approx(
      {"average_incremental_accuracy": (0.9 + 0.75) / 2, "final_average_accuracy": 0.75,
       "forgetting": 0.2, "backward_transfer": -0.2})
  assert (continual.forgetting(ACC[:1]), continual.backward_transfer(ACC[:1])) == (0.0, 0.0)

"""Retrieval metrics against hand-computed examples (ties, multi-label, queries with no relevant item)."""
import numpy as np
import pytest

from ml_pipelines.evaluators import retrieval as rm
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
  assert rm.mean_average_precision(2 * Q - 1, 2 * DB - 1, Q_LABELS, DB_LABELS) == pytest.approx(np.mean(AP))
  # top 2: q0 sees [rel, not rel] -> AP 1; q3 [rel, rel] -> 1.
  assert rm.mean_average_precision(Q, DB, Q_LABELS, DB_LABELS, topk=2) == pytest.approx(0.75)


def test_precision_recall_at_radius_with_empty_ball():
  # r = 1: q0 ball {0,1,2}: P 2/3 R 2/3; q1 ball {3}, nothing relevant: 0, 0; q2 ball {1,2,4}: P 1 R 3/5;
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

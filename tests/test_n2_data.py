"""N² data builders on tiny fakes in the published layouts, GAT against a dense brute force, the
edge-range check, and an N² config trained from a fake Amazon-Photo npz."""
import gzip
import os

import numpy as np
import pytest

import models
from ml_pipelines import train
from ml_pipelines.data import graph_demo, graph_sets, graphs
from ml_pipelines.trainer import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


def _edge_set(ds):
  g = ds.info["graph"]
  return set(zip(g["senders"].tolist(), g["receivers"].tolist()))


def test_yandex_npz_is_undirected_and_uses_the_chosen_split(tmp_path):
  masks = RNG.random((3, 10, 6)) < 0.5
  np.savez(tmp_path / "amazon_ratings.npz", node_features=RNG.normal(size=(6, 3)),
           node_labels=np.array([0, 1, 2, 0, 1, 2]), edges=np.array([[0, 1], [1, 2], [5, 4]]),
           train_masks=masks[0], val_masks=masks[1], test_masks=masks[2])
  ds = graph_sets.yandex({"data_dir": str(tmp_path), "dataset": "amazon-ratings",
                          "split_index": 3}, "val")
  assert _edge_set(ds) == {(0, 1), (1, 0), (1, 2), (2, 1), (5, 4), (4, 5)}
  np.testing.assert_array_equal(ds.source.arrays["node"], np.flatnonzero(masks[1, 3]))
  assert ds.info["num_classes"] == 3


def _csr(dense):
  rows, cols = np.nonzero(dense)
  return np.searchsorted(rows, np.arange(len(dense) + 1)), cols, dense[rows, cols]


def test_shchur_npz_reads_csr_and_splits_60_20_20(tmp_path):
  adj = np.zeros((10, 10))
  adj[[0, 1, 2, 3, 4, 7], [1, 2, 3, 3, 9, 8]] = 1  # one directed copy and a self loop
  attr = (RNG.random((10, 4)) < 0.4) * RNG.random((10, 4))
  indptr, idx, vals = _csr(adj)
  aptr, aidx, avals = _csr(attr)
  np.savez(tmp_path / "photo.npz", adj_data=vals, adj_indices=idx, adj_indptr=indptr,
           adj_shape=adj.shape, attr_data=avals, attr_indices=aidx, attr_indptr=aptr,
           attr_shape=attr.shape, labels=np.arange(10) % 3)
  parts = {s: graph_sets.shchur({"data_dir": str(tmp_path), "dataset": "photo"}, s)
           for s in ("train", "val", "test")}
  np.testing.assert_allclose(parts["train"].info["graph"]["x"], attr, rtol=1e-6)
  edges = {(0, 1), (1, 2), (2, 3), (4, 9), (7, 8)}
  assert _edge_set(parts["train"]) == edges | {(b, a) for a, b in edges}
  nodes = [parts[s].source.arrays["node"] for s in ("train", "val", "test")]
  assert [len(n) for n in nodes] == [6, 2, 2]
  np.testing.assert_array_equal(np.sort(np.concatenate(nodes)), np.arange(10))


def test_ogbn_raw_layout_keeps_the_official_orientation(tmp_path):
  raw, split = tmp_path / "raw", tmp_path / "split" / "time"
  raw.mkdir()
  split.mkdir(parents=True)

  def write(path, rows):
    with gzip.open(path, "wt") as f:
      f.write("\n".join(",".join(str(v) for v in np.atleast_1d(r)) for r in rows) + "\n")
  write(raw / "edge.csv.gz", [[0, 1], [2, 1], [3, 0]])
  write(raw / "node-feat.csv.gz", RNG.normal(size=(4, 2)).round(3))
  write(raw / "node-label.csv.gz", [[1], [0], [1], [2]])
  for part, ids in (("train", [0, 1]), ("valid", [2]), ("test", [3])):
    write(split / f"{part}.csv.gz", [[i] for i in ids])
  ds = graph_sets.ogbn({"data_dir": str(tmp_path)}, "train")
  # official: row = edge_index[0] aggregates from edge_index[1], so 0 receives from 1
  assert _edge_set(ds) == {(1, 0), (1, 2), (0, 3)}
  np.testing.assert_array_equal(ds.source.arrays["label"], [1, 0])


def _write_tu(root, name, all_graphs, edges_override=None):
  lines_a, indicator, node_labels, offset = [], [], [], 0
  for g_id, g in enumerate(all_graphs):
    n = len(g["x"])
    lines_a += [f"{s + offset + 1}, {r + offset + 1}" for s, r in zip(g["senders"], g["receivers"])]
    indicator += [g_id + 1] * n
    node_labels += list(np.argmax(g["x"], -1))
    offset += n
  if edges_override:
    lines_a.append(edges_override)
  for suffix, rows in (("A", lines_a), ("graph_indicator", indicator),
                       ("graph_labels", [2 * g["label"] - 1 for g in all_graphs]),
                       ("node_labels", node_labels)):
    (root / f"{name}_{suffix}.txt").write_text("\n".join(map(str, rows)) + "\n")


def test_tu_text_files_round_trip_and_folds_hold_out_the_test_fold(tmp_path):
  rng = np.random.default_rng(1)
  all_graphs = [graph_demo.cycle_or_path(int(rng.integers(4, 8)), i % 2, rng) for i in range(30)]
  _write_tu(tmp_path, "FAKE", all_graphs)
  read, classes = graph_sets.read_tu(str(tmp_path), "FAKE", degree_features=False)
  assert classes == 2
  for a, b in zip(read, all_graphs):
    np.testing.assert_array_equal(np.argmax(a["x"], -1), np.argmax(b["x"], -1) - 1)  # min 1
    assert set(zip(a["senders"], a["receivers"])) == set(zip(b["senders"], b["receivers"]))
    assert a["label"] == b["label"]
  labels = np.array([g["label"] for g in all_graphs])
  ids = graph_sets.tu_folds(labels, fold=2, protocol="folds")
  assert not set(ids["test"]) & set(ids["train"]) and not set(ids["val"]) & set(ids["train"])
  assert len(ids["train"]) + len(ids["val"]) + len(ids["test"]) == 30
  assert len(graph_sets.tu_folds(labels, 2, "official")["test"]) == 30  # the official slip
  ds = graph_sets.tu({"data_dir": str(tmp_path), "dataset": "FAKE", "fold": 2}, "test")
  assert len(ds.source) == len(ids["test"]) and ds.info["max_nodes"] == 8


def test_edges_outside_the_node_range_are_refused(tmp_path):
  graph = {"x": np.zeros((3, 2), np.float32), "senders": np.array([0, 1]),
           "receivers": np.array([1, 3])}
  with pytest.raises(ValueError, match=r"outside the graph's 3 nodes: receivers holds \[3\]"):
    graphs.node_dataset(graph, np.zeros(3), np.arange(3), 2)
  with pytest.raises(ValueError, match="outside the graph's 3 nodes"):
    graphs.pad_graph(graph["x"], np.array([-1]), np.array([0]), 5, 4)
  rng = np.random.default_rng(1)
  _write_tu(tmp_path, "BAD", [graph_demo.cycle_or_path(4, 0, rng)], edges_override="4, 9")
  with pytest.raises(ValueError, match="outside the graph's 4 nodes"):
    graph_sets.read_tu(str(tmp_path), "BAD", degree_features=False)


def _dense_gat(x, senders, receivers, w, a_src, a_dst, heads, dim):
  n = len(x)
  adj = np.eye(n, dtype=bool)
  adj[receivers, senders] = True
  h = (x @ w).reshape(n, heads, dim)
  out = np.zeros((n, heads, dim))
  for i in range(n):
    for k in range(heads):
      e = np.array([h[i, k] @ a_dst[k] + h[j, k] @ a_src[k] for j in range(n)])
      e = np.where(e > 0, e, 0.2 * e)
      e = np.where(adj[i], e, -np.inf)
      alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
      out[i, k] = alpha @ h[:, k]
  return out


def test_gat_layer_matches_dense_attention_and_padding():
  x = RNG.normal(size=(5, 3)).astype(np.float32)
  senders, receivers = graphs.undirected_edges(np.array([[0, 1], [1, 2], [3, 4], [0, 4]]))
  model = models.build("gat", in_features=3, num_classes=2, hidden=(4,), heads=3, dropout=0.0)
  layer = model.layers[0]
  got = layer(x, senders, receivers, np.ones(len(senders), bool))
  want = _dense_gat(x, senders, receivers, np.asarray(layer.linear.kernel[...]),
                    np.asarray(layer.att_src[...]), np.asarray(layer.att_dst[...]), 3, 4)
  np.testing.assert_allclose(got, want.reshape(5, 12), rtol=1e-4, atol=1e-5)
  p = graphs.pad_graph(x, senders, receivers, 8, 12)
  p["x"][5:] = 50.0
  batched = layer(p["x"][None], p["senders"][None], p["receivers"][None], p["edge_mask"][None])
  np.testing.assert_allclose(batched[0, :5], got, rtol=1e-4, atol=1e-5)


def test_n2_config_trains_from_a_fake_amazon_photo_npz(tmp_path):
  graph, labels = graph_demo.contextual_sbm(100, 3, 6.0, 0.95, 5, 1.5, seed=0)
  adj = np.zeros((100, 100))
  adj[graph["senders"], graph["receivers"]] = 1
  feats = graph["x"] - graph["x"].min()
  indptr, idx, vals = _csr(adj)
  aptr, aidx, avals = _csr(feats)
  np.savez(tmp_path / "amazon_electronics_photo.npz", adj_data=vals, adj_indices=idx,
           adj_indptr=indptr, adj_shape=adj.shape, attr_data=avals, attr_indices=aidx,
           attr_indptr=aptr, attr_shape=feats.shape, labels=labels)
  c = config_lib.load(os.path.join(ROOT, "configs/graph/n2.py") + ":amazon_photo")
  for k, v in {"data.data_dir": str(tmp_path), "model.in_features": 5, "model.num_classes": 3,
               "model.d_model": 16, "model.q_dim": 8, "model.n_q": 2, "model.n_pnode": 8,
               "model.T": 2, "model.dropout": 0.0, "batch_size": 56, "eval_batch_size": 24,
               "total_steps": 40, "eval_every": 0, "checkpoint_every": 0,
               "optimizer.learning_rate": 1e-2}.items():
    config_lib.override(c, [f"{k}={v!r}"])
  result = train.train_and_evaluate(c, str(tmp_path / "run"))
  test_labels = labels[graph_sets.shchur(c.data, "test").source.arrays["node"]]
  majority = np.bincount(test_labels).max() / len(test_labels)
  assert result["eval/accuracy"] >= majority + 0.3, (result["eval/accuracy"], majority)


def test_colour_pair_labels_say_whether_two_far_marked_nodes_share_a_colour():
  from scipy.sparse import csr_matrix
  from scipy.sparse.csgraph import shortest_path
  ds = graph_sets.colour_pair({"num_graphs": 40, "min_nodes": 10, "max_nodes": 20, "hops": 3,
                               "colours": 3}, "train")
  labels = []
  for i in range(len(ds.source)):
    g = graphs.unpad_graph(ds.source[i])
    n = len(g["x"])
    dist = shortest_path(csr_matrix((np.ones(len(g["senders"])), (g["senders"], g["receivers"])),
                                    shape=(n, n)), unweighted=True)
    a, b = np.flatnonzero(g["x"][:, 3])
    assert dist[a, b] > 3 and np.isfinite(dist).all()
    assert g["x"][:, :3].sum(1).tolist() == [1.0] * n
    same = np.argmax(g["x"][a, :3]) == np.argmax(g["x"][b, :3])
    assert ds.source[i]["label"] == int(same)
    labels.append(int(same))
  assert sum(labels) == len(labels) // 2

"""Message passing against dense adjacency matrices, graph padding, both graph layouts trained."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml_pipelines import train
from ml_pipelines.data import graph_demo, graphs
from ml_pipelines.trainer import config as config_lib
from models import message_passing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 5 real nodes, directed weighted edges j -> i; node 3 receives nothing.
SENDERS = np.array([0, 1, 2, 4, 0, 3, 1], np.int32)
RECEIVERS = np.array([1, 0, 1, 2, 4, 4, 2], np.int32)
WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5, 3.0, 1.0, 0.25], np.float32)
X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)


def _dense(senders, receivers, weights, n):
  a = np.zeros((n, n), np.float64)  # a[i, j]: weight of the edge j -> i
  np.add.at(a, (receivers, senders), weights)
  return a


def _padded(max_nodes=8, max_edges=12):
  g = graphs.pad_graph(X, SENDERS, RECEIVERS, max_nodes, max_edges, WEIGHTS)
  g["x"][5:] = 100.0  # garbage on padding nodes must not reach real nodes
  return g


def test_aggregation_matches_dense_adjacency_and_padding_has_no_effect():
  a = _dense(SENDERS, RECEIVERS, WEIGHTS, 5)
  count = np.bincount(RECEIVERS, minlength=5)[:, None]
  want = {"sum": a @ X, "mean": (a @ X) / np.maximum(count, 1)}
  want["max"] = np.zeros_like(X)
  for i in range(5):
    incoming = [WEIGHTS[e] * X[SENDERS[e]] for e in range(len(SENDERS)) if RECEIVERS[e] == i]
    if incoming:
      want["max"][i] = np.max(incoming, axis=0)
  p = _padded()
  w = np.asarray(mp.edge_weights(p))
  for how, ref in want.items():
    np.testing.assert_allclose(mp.propagate(X, SENDERS, RECEIVERS, WEIGHTS, how), ref, rtol=1e-5,
                               atol=1e-6, err_msg=how)
    got = mp.propagate(p["x"], p["senders"], p["receivers"], w, how)
    np.testing.assert_allclose(got[:5], ref, rtol=1e-5, atol=1e-6, err_msg=f"padded {how}")


def test_gcn_normalisation_matches_the_dense_formula():
  a = _dense(SENDERS, RECEIVERS, WEIGHTS, 5) + np.eye(5)
  d = a.sum(axis=1)
  a_hat = a / np.sqrt(d[:, None] * d[None, :])  # D^-1/2 (A + I) D^-1/2
  got = mp.propagate(X, *mp.gcn_normalise(SENDERS, RECEIVERS, WEIGHTS, 5))
  np.testing.assert_allclose(got, a_hat @ X, rtol=1e-5, atol=1e-6)
  p = _padded()
  got = mp.propagate(p["x"], *mp.gcn_normalise(p["senders"], p["receivers"],
                                               mp.edge_weights(p), 8))
  np.testing.assert_allclose(got[:5], a_hat @ X, rtol=1e-5, atol=1e-6)


def test_batched_gcn_layer_on_padded_graphs_equals_each_graph_alone():
  layer = mp.GCNConv(3, 4, rngs=nnx.Rngs(0))
  second = {"x": X[:3] * 2, "senders": np.array([0, 1], np.int32),
            "receivers": np.array([1, 2], np.int32)}
  p1 = _padded()
  p2 = graphs.pad_graph(second["x"], second["senders"], second["receivers"], 8, 12,
                        np.ones(2, np.float32))
  batch = {k: np.stack([p1[k], p2[k]]) for k in p1}
  out = layer(jnp.asarray(batch["x"]), batch["senders"], batch["receivers"],
              mp.edge_weights(batch))
  np.testing.assert_allclose(out[0, :5], layer(X, SENDERS, RECEIVERS, WEIGHTS), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(out[1, :3], layer(second["x"], second["senders"],
                                               second["receivers"], np.ones(2, np.float32)),
                             rtol=1e-5, atol=1e-6)


def test_padding_round_trip_and_limits():
  p = graphs.pad_graph(X, SENDERS, RECEIVERS, 8, 12, WEIGHTS)
  assert p["x"].shape == (8, 3) and p["senders"].shape == (12,)
  assert p["node_mask"].sum() == 5 and p["edge_mask"].sum() == 7
  assert (p["senders"][7:] == 7).all() and (p["receivers"][7:] == 7).all()  # the padding node
  back = graphs.unpad_graph(p)
  for k, v in {"x": X, "senders": SENDERS, "receivers": RECEIVERS, "edge_weight": WEIGHTS}.items():
    np.testing.assert_array_equal(back[k], v)
  with pytest.raises(ValueError, match="needs one padding node"):
    graphs.pad_graph(X, SENDERS, RECEIVERS, 5, 12)
  ds = graphs.padded_graph_dataset([{**graphs.unpad_graph(p), "label": 1},
                                    {"x": X[:2], "senders": SENDERS[:1] * 0,
                                     "receivers": SENDERS[:1] * 0 + 1, "label": 0,
                                     "edge_weight": WEIGHTS[:1]}], num_classes=2)
  assert ds.element_spec["x"] == ((6, 3), np.float32)  # largest graph + the padding node
  np.testing.assert_array_equal(graphs.unpad_graph(ds.source[0])["senders"], SENDERS)


def test_contextual_sbm_has_the_requested_degree_and_homophily():
  g, labels = graph_demo.contextual_sbm(2000, 4, 10.0, 0.2, 8, 1.0, seed=0)
  assert abs(len(g["senders"]) / 2000 - 10.0) < 0.5  # both directions: mean degree
  same = np.mean(labels[g["senders"]] == labels[g["receivers"]])
  assert abs(same - 0.2) < 0.02
  assert (g["senders"] != g["receivers"]).all()


def _config(name, **overrides):
  c = config_lib.load(os.path.join(ROOT, "configs/graph", name))
  c.eval_every = 0
  c.checkpoint_every = 0
  for k, v in overrides.items():
    config_lib.override(c, [f"{k}={v!r}"])
  return c


def test_gcn_node_classification_uses_the_graph(tmp_path):
  c = _config("gcn_sbm.py", total_steps=100, **{"data.feature_noise": 1.5})
  result = train.train_and_evaluate(c, str(tmp_path))
  ds = graph_demo.sbm(c.data, "test")
  x = ds.info["graph"]["x"][ds.source.arrays["node"]]
  features_only = np.mean(np.argmax(x[:, :4], -1) == ds.source.arrays["label"])
  majority = np.bincount(ds.source.arrays["label"]).max() / len(ds.source)
  # neighbours denoise the features: far above the majority class and the features alone
  assert result["eval/accuracy"] > max(majority + 0.5, features_only + 0.2), (
      result["eval/accuracy"], features_only, majority)


def test_gcn_graph_classification_on_padded_graphs(tmp_path):
  c = _config("gcn_graphs.py", total_steps=60)
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result["eval/accuracy"] > 0.9  # balanced classes: majority rate 0.5

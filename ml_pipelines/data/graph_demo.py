"""Embedded graph datasets generated from a seed (no download), one per layout of `graphs.py`.

"sbm": node classification on a contextual stochastic block model. `num_nodes` nodes in
  `num_classes` equal communities; an edge joins each pair independently, with probabilities set so
  the mean degree is `avg_degree` and a fraction `homophily` of the edges join nodes of the same
  community; features are noisy class indicators `onehot(class) + feature_noise * N(0, I)` (padded
  to `feature_dim`). Splits: a seeded 60/20/20 partition of the nodes, "train" / "val" / "test".
  Options (config.data): num_nodes (400), num_classes (4), avg_degree (8), homophily (0.9),
  feature_dim (8), feature_noise (1.0), graph_seed (0).
"cycles_paths": graph classification of cycles (label 0) against paths (label 1) of
  `min_nodes..max_nodes` nodes, with one-hot degree features (the TU convention for graphs without
  node features), each padded to `max_nodes + 1` nodes and `2 * max_nodes` edges. Splits: a seeded
  80/20 partition, "train" / "test". Options: num_graphs (600), min_nodes (6), max_nodes (20),
  graph_seed (0).
"""
from __future__ import annotations

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import graphs
from ml_pipelines.registry import unknown_options

SBM = dict(num_nodes=400, num_classes=4, avg_degree=8.0, homophily=0.9, feature_dim=8,
           feature_noise=1.0, graph_seed=0)
CYCLES_PATHS = dict(num_graphs=600, min_nodes=6, max_nodes=20, graph_seed=0)


def _options(config, defaults: dict, what: str) -> dict:
  config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
  given = {k: v for k, v in config.items()
           if k not in ("name", "train_split", "eval_split", "sampler")}
  unknown_options(given, defaults, what)
  return {**defaults, **given}


def _split(rows: np.ndarray, split: str, cuts: dict[str, tuple[float, float]]) -> np.ndarray:
  if split not in cuts:
    raise ValueError(f"Unknown split {split!r}; this dataset has {', '.join(cuts)}.")
  lo, hi = cuts[split]
  return rows[int(lo * len(rows)):int(hi * len(rows))]


def contextual_sbm(num_nodes: int, num_classes: int, avg_degree: float, homophily: float,
                   feature_dim: int, feature_noise: float, seed: int):
  """(graph arrays, labels) of one contextual SBM draw."""
  if feature_dim < num_classes:
    raise ValueError(f"feature_dim {feature_dim} is smaller than num_classes {num_classes}.")
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_nodes) % num_classes).astype(np.int32)
  # within-class pairs ~ N^2 / 2C, across ~ N^2 (C-1) / 2C; N d / 2 edges, a share h within.
  p_in = homophily * avg_degree * num_classes / num_nodes
  p_out = (1 - homophily) * avg_degree * num_classes / (num_nodes * (num_classes - 1))
  prob = np.where(labels[:, None] == labels[None, :], p_in, p_out)
  i, j = np.nonzero(np.triu(rng.random((num_nodes, num_nodes)) < prob, k=1))
  senders, receivers = graphs.undirected_edges(np.stack([i, j], 1))
  x = np.zeros((num_nodes, feature_dim), np.float32)
  x[np.arange(num_nodes), labels] = 1.0
  x += feature_noise * rng.normal(size=x.shape).astype(np.float32)
  return {"x": x, "senders": senders, "receivers": receivers}, labels


@data.register("sbm")
def sbm(config, split: str) -> data.Dataset:
  o = _options(config, SBM, "sbm dataset")
  graph, labels = contextual_sbm(o["num_nodes"], o["num_classes"], o["avg_degree"],
                                 o["homophily"], o["feature_dim"], o["feature_noise"],
                                 o["graph_seed"])
  order = np.random.default_rng([o["graph_seed"], 1]).permutation(o["num_nodes"])
  nodes = _split(order, split, {"train": (0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)})
  return graphs.node_dataset(graph, labels, nodes, o["num_classes"])


def cycle_or_path(n: int, label: int, rng: np.random.Generator, max_degree: int = 2) -> dict:
  """A cycle (label 0) or path (label 1) on n nodes in random order, one-hot degree features."""
  ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1)[:n if label == 0 else n - 1]
  relabel = rng.permutation(n)
  senders, receivers = graphs.undirected_edges(relabel[ring])
  return {"x": graphs.degree_one_hot(receivers, n, max_degree), "senders": senders,
          "receivers": receivers, "label": label}


@data.register("cycles_paths")
def cycles_paths(config, split: str) -> data.Dataset:
  o = _options(config, CYCLES_PATHS, "cycles_paths dataset")
  rng = np.random.default_rng(o["graph_seed"])
  sizes = rng.integers(o["min_nodes"], o["max_nodes"] + 1, size=o["num_graphs"])
  labels = rng.permutation(np.arange(o["num_graphs"]) % 2)
  all_graphs = [cycle_or_path(int(n), int(y), rng) for n, y in zip(sizes, labels)]
  rows = _split(np.arange(o["num_graphs"]), split, {"train": (0, 0.8), "test": (0.8, 1.0)})
  return graphs.padded_graph_dataset([all_graphs[i] for i in rows], num_classes=2,
                                     max_nodes=o["max_nodes"] + 1, max_edges=2 * o["max_nodes"])

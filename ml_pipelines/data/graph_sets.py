"""Graph benchmarks of the N² paper (Sun et al., NeurIPS 2024) read from manual directories in their
published layouts, plus the generated global-property graph set.

Node tasks (layout a of `graphs.py`: examples are node ids, the graph a task constant):
- "yandex" (Platonov et al. 2023: amazon-ratings, minesweeper, tolokers, questions): `<data_dir>/
  <name>.npz` with `node_features [N, F]`, `node_labels [N]`, `edges [E, 2]` (made undirected) and
  `train_masks / val_masks / test_masks [10, N]`; option `split_index` (0..9) picks the fixed split.
- "shchur" (Amazon-Computers/Photo, Coauthor-CS/Physics, Shchur et al. 2018): the `.npz` that PyG
  downloads, CSR `adj_data / adj_indices / adj_indptr / adj_shape`, CSR `attr_*` and `labels`; the
  graph is made undirected without self loops. Split: a random 60/20/20 partition seeded by
  `split_seed` (the official code draws it with `torch.randperm` after `torch.manual_seed(42)`,
  which NumPy cannot reproduce; the proportions are the same).
- "ogbn" (ogbn-arxiv): the OGB raw layout, `raw/edge.csv.gz` (`src,dst` rows),
  `raw/node-feat.csv.gz`, `raw/node-label.csv.gz` and `split/<scheme>/{train,valid,test}.csv.gz`. As
  in the official loader the edges keep their stored direction (`undirected=False`): node `src`
  aggregates from `dst`.
Graph tasks (layout b: each example one padded graph):
- "tu" (PROTEINS, NCI1, IMDB-BINARY, IMDB-MULTI, COLLAB): the TUDataset text files `<name>_A.txt`,
  `_graph_indicator.txt`, `_graph_labels.txt` and, if present, `_node_labels.txt` (one-hot, PyG's
  default features); `degree_features=True` uses one-hot degrees up to the dataset's maximum instead
  (the official choice for IMDB and COLLAB). Folds: `StratifiedKFold(10, shuffle=True,
  random_state=42)` as the official code. Protocol `"folds"` (default, the paper's
  cross-validation): test = fold `fold`, val = fold `fold + 1`, train = the other eight.
  `"official"` reproduces the released code, whose test set is the whole dataset (training graphs
  included): train = nine folds, val = fold `fold`, test = all graphs. Not the paper's protocol,
  kept only to compare numbers.
- "ogbg_molpcba" (Hu et al. 2020; 437,929 molecules, 128 assays): the prepared TFDS dataset
  (`tfds.builder('ogbg_molpcba')`, read through `tfds.data_source` from `data_dir`, default
  `$TFDS_DATA_DIR`), splits train / validation / test (OGB's scaffold split). Each molecule lists
  both directions of every bond; node features are the 9 integer atom features followed by the 3
  integer bond features summed over each atom's bonds plus 1 for its self loop, as the official N²
  code builds them (`add_remaining_self_loops` with fill 1, then `scatter(..., reduce='sum')` over
  `edge_index[0]`, concatenated to `x`): 12 features. Labels `[128]` float, NaN = not measured.
  Padded to `max_nodes` / `max_edges` (defaults fit the largest molecule, 332 atoms, plus the
  padding node); a larger graph fails with the sizes to raise.
- "far_pair" (generated, no download): `num_graphs` random connected graphs of
  `min_nodes..max_nodes` nodes (a random tree plus `extra_edges` random chords per 10 nodes), two of
  them marked; the label is whether the marked nodes are more than `hops` apart, a global property
  no 2-layer local model can read. Features `[marked, 1]`; classes balanced; 80/20 "train" / "test"
  split.
- "colour_pair" (generated): the same random graphs with a random colour among `colours` on every
  node and two marked nodes more than `hops` apart; the label is whether the two marked nodes share
  a colour (classes alternate). Features `[onehot(colour), marked]`. A node within L hops of both
  marked nodes exists only if they are at most 2L apart, so no node of an L <= hops / 2 layer
  local model sees both; and the label is not a linear function of node counts pooled over the
  graph (same colour: one colour counted twice among the marked nodes; different: two colours once
  each, the same total), so a local model with a mean-pool and a linear head stays at chance. It
  takes whole-graph information processed non-linearly, which N²'s pseudo nodes do at every step.
  80/20 "train" / "test" split.
"""
from __future__ import annotations

import gzip
import os
from collections import deque

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import graphs
from ml_pipelines.data.graph_demo import _options, _split

YANDEX = dict(data_dir="data/yandex", dataset="amazon-ratings", split_index=0)
SHCHUR = dict(data_dir="data/shchur", dataset="amazon_electronics_photo", split_seed=42)
OGBN = dict(data_dir="data/ogbn_arxiv", undirected=False)
TU = dict(data_dir="data/tu", dataset="PROTEINS", fold=0, protocol="folds", degree_features=False)
MOLPCBA = dict(data_dir=None, max_nodes=333, max_edges=1024)
MOLPCBA_SPLITS = {"train": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test"}
FAR_PAIR = dict(num_graphs=1000, min_nodes=10, max_nodes=30, hops=4, extra_edges=1.0, graph_seed=0)
COLOUR_PAIR = dict(num_graphs=1000, min_nodes=10, max_nodes=30, hops=4, extra_edges=1.0, colours=3,
                   graph_seed=0)
_NODE_SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test"}


def _node_split(split: str) -> str:
  if split not in _NODE_SPLITS:
    raise ValueError(f"Unknown split {split!r}; node datasets have train, val and test.")
  return _NODE_SPLITS[split]


def _csr(arrays, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
  indptr, indices = arrays[f"{prefix}_indptr"], arrays[f"{prefix}_indices"]
  rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
  return rows, indices, arrays[f"{prefix}_data"], tuple(arrays[f"{prefix}_shape"])


@data.register("yandex")
def yandex(config, split: str) -> data.Dataset:
  o = _options(config, YANDEX, "yandex dataset")
  with np.load(os.path.join(o["data_dir"], f"{o['dataset'].replace('-', '_')}.npz")) as f:
    arrays = dict(f)
  labels = arrays["node_labels"].astype(np.int32)
  senders, receivers = graphs.undirected_edges(arrays["edges"])
  mask = arrays[f"{_node_split(split)}_masks"][o["split_index"]]
  graph = {"x": arrays["node_features"].astype(np.float32), "senders": senders,
           "receivers": receivers}
  return graphs.node_dataset(graph, labels, np.flatnonzero(mask), int(labels.max()) + 1)


@data.register("shchur")
def shchur(config, split: str) -> data.Dataset:
  o = _options(config, SHCHUR, "shchur dataset")
  name = o["dataset"] if o["dataset"].endswith(".npz") else o["dataset"] + ".npz"
  with np.load(os.path.join(o["data_dir"], name), allow_pickle=True) as f:
    arrays = dict(f)
  rows, cols, _, (n, _) = _csr(arrays, "adj")
  senders, receivers = graphs.undirected_edges(np.stack([rows, cols], 1))
  r, c, v, shape = _csr(arrays, "attr")
  x = np.zeros(shape, np.float32)
  x[r, c] = v
  labels = arrays["labels"].astype(np.int32)
  order = np.random.default_rng(o["split_seed"]).permutation(n)
  cut = int(n * 0.2)
  nodes = {"val": order[:cut], "test": order[cut:2 * cut], "train": order[2 * cut:]}
  return graphs.node_dataset({"x": x, "senders": senders, "receivers": receivers}, labels,
                             np.sort(nodes[_node_split(split)]), int(labels.max()) + 1)


def _csv(path: str, dtype) -> np.ndarray:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)


@data.register("ogbn")
def ogbn(config, split: str) -> data.Dataset:
  o = _options(config, OGBN, "ogbn dataset")
  root = o["data_dir"]
  edges = _csv(os.path.join(root, "raw", "edge.csv.gz"), np.int64)
  x = _csv(os.path.join(root, "raw", "node-feat.csv.gz"), np.float32)
  labels = _csv(os.path.join(root, "raw", "node-label.csv.gz"), np.int64)[:, 0].astype(np.int32)
  if o["undirected"]:
    senders, receivers = graphs.undirected_edges(edges)
  else:  # the official orientation: row = edge_index[0] aggregates from edge_index[1]
    keep = edges[:, 0] != edges[:, 1]
    senders, receivers = edges[keep, 1].astype(np.int32), edges[keep, 0].astype(np.int32)
  (scheme,) = os.listdir(os.path.join(root, "split"))
  part = {"train": "train", "val": "valid", "test": "test"}[_node_split(split)]
  nodes = _csv(os.path.join(root, "split", scheme, f"{part}.csv.gz"), np.int64)[:, 0]
  return graphs.node_dataset({"x": x, "senders": senders, "receivers": receivers}, labels, nodes,
                             int(labels.max()) + 1)


def read_tu(root: str, name: str, degree_features: bool) -> tuple[list[dict], int]:
  """(graphs `{x, senders, receivers, label}`, number of classes) from TUDataset text files."""
  def txt(suffix, dtype=np.int64):
    return np.loadtxt(os.path.join(root, f"{name}_{suffix}.txt"), delimiter=",", dtype=dtype,
                      ndmin=1)
  edges = np.atleast_2d(txt("A")) - 1
  graph_of = txt("graph_indicator") - 1
  _, labels = np.unique(txt("graph_labels"), return_inverse=True)
  num_nodes = len(graph_of)
  graphs.check_edges(edges[:, 1], edges[:, 0], num_nodes)
  if degree_features:
    _, receivers = graphs.undirected_edges(edges)
    max_degree = int(np.bincount(receivers, minlength=num_nodes).max())
  elif os.path.exists(os.path.join(root, f"{name}_node_labels.txt")):
    node_labels = txt("node_labels")
    node_labels = node_labels - node_labels.min()
    x_all = np.eye(int(node_labels.max()) + 1, dtype=np.float32)[node_labels]
  else:
    raise ValueError(f"{name} has no {name}_node_labels.txt; set degree_features=True.")
  start = np.searchsorted(graph_of, np.arange(len(labels)))
  out = []
  for g, label in enumerate(labels):
    lo = start[g]
    n = int(np.sum(graph_of == g))
    e = edges[(graph_of[edges[:, 0]] == g)] - lo
    senders, receivers = graphs.undirected_edges(e)
    x = (graphs.degree_one_hot(receivers, n, max_degree) if degree_features
         else x_all[lo:lo + n])
    out.append({"x": x, "senders": senders, "receivers": receivers, "label": int(label)})
  return out, int(labels.max()) + 1


def tu_folds(labels: np.ndarray, fold: int, protocol: str) -> dict[str, np.ndarray]:
  """Graph ids of train / val / test under the stratified 10-fold split (module docstring)."""
  from sklearn.model_selection import StratifiedKFold
  folds = [test for _, test in StratifiedKFold(10, shuffle=True, random_state=42).split(
      np.zeros(len(labels)), labels)]
  if protocol == "folds":
    val = (fold + 1) % 10
    train = np.concatenate([f for i, f in enumerate(folds) if i not in (fold, val)])
    return {"train": np.sort(train), "val": folds[val], "test": folds[fold]}
  if protocol == "official":
    train = np.concatenate([f for i, f in enumerate(folds) if i != fold])
    return {"train": np.sort(train), "val": folds[fold], "test": np.arange(len(labels))}
  raise ValueError(f"Unknown TU protocol {protocol!r}; use 'folds' or 'official'.")


@data.register("tu")
def tu(config, split: str) -> data.Dataset:
  o = _options(config, TU, "tu dataset")
  all_graphs, num_classes = read_tu(o["data_dir"], o["dataset"], o["degree_features"])
  ids = tu_folds(np.array([g["label"] for g in all_graphs]), o["fold"], o["protocol"])
  if split not in ids:
    raise ValueError(f"Unknown split {split!r}; TU datasets have train, val and test.")
  return graphs.padded_graph_dataset(
      [all_graphs[i] for i in ids[split]], num_classes,
      max_nodes=1 + max(len(g["x"]) for g in all_graphs),
      max_edges=max(len(g["senders"]) for g in all_graphs))


def molecule_graph(example, max_nodes: int, max_edges: int) -> dict[str, np.ndarray]:
  """A TFDS ogbg_molpcba example (`num_nodes [1]`, `node_feat [n, 9]`, `edge_feat [E, 3]`,
  `edge_index [E, 2]`, `labels [128]`) as one padded graph with its float labels."""
  n = int(np.asarray(example["num_nodes"]).reshape(-1)[0])
  edges = np.asarray(example["edge_index"], np.int64).reshape(-1, 2)
  graphs.check_edges(edges[:, 0], edges[:, 1], n)
  bond_sums = np.ones((n, 3), np.float32)  # the self loop's fill value
  np.add.at(bond_sums, edges[:, 0], np.asarray(example["edge_feat"], np.float32).reshape(-1, 3))
  x = np.concatenate([np.asarray(example["node_feat"], np.float32), bond_sums], axis=1)
  senders, receivers = graphs.undirected_edges(edges)
  return {**graphs.pad_graph(x, senders, receivers, max_nodes, max_edges),
          "label": np.asarray(example["labels"], np.float32)}


class MoleculeGraphs:
  """Random access over a TFDS ogbg_molpcba source, each example a padded graph."""

  def __init__(self, source, max_nodes: int, max_edges: int):
    self.source, self.max_nodes, self.max_edges = source, max_nodes, max_edges

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return molecule_graph(self.source[i], self.max_nodes, self.max_edges)


@data.register("ogbg_molpcba")
def ogbg_molpcba(config, split: str) -> data.Dataset:
  from ml_pipelines.data.tfds_image import tfds_source
  o = _options(config, MOLPCBA, "ogbg_molpcba dataset")
  if split not in MOLPCBA_SPLITS:
    raise ValueError(f"Unknown split {split!r}; ogbg_molpcba has train, validation and test.")
  source = MoleculeGraphs(tfds_source("ogbg_molpcba", MOLPCBA_SPLITS[split], o["data_dir"]),
                          o["max_nodes"], o["max_edges"])
  n, e = o["max_nodes"], o["max_edges"]
  spec = {"x": ((n, 12), np.float32), "node_mask": ((n,), np.bool_),
          "senders": ((e,), np.int32), "receivers": ((e,), np.int32),
          "edge_mask": ((e,), np.bool_), "label": ((128,), np.float32)}
  return data.Dataset(source=source, element_spec=spec,
                      info={"num_classes": 128, "max_nodes": n, "max_edges": e,
                            "num_features": 12})


def hop_distances(senders: np.ndarray, receivers: np.ndarray, n: int, a: int) -> np.ndarray:
  """Breadth-first distances `[n]` from node a (n where unreachable)."""
  nbrs = [[] for _ in range(n)]
  for s, r in zip(senders, receivers):
    nbrs[s].append(r)
  dist, queue = np.full(n, n), deque([a])
  dist[a] = 0
  while queue:
    u = queue.popleft()
    for v in nbrs[u]:
      if dist[v] == n:
        dist[v] = dist[u] + 1
        queue.append(v)
  return dist


def hop_distance(senders: np.ndarray, receivers: np.ndarray, n: int, a: int, b: int) -> int:
  """Breadth-first distance from a to b (n if unreachable)."""
  return int(hop_distances(senders, receivers, n, a)[b])


def random_connected_graph(n: int, rng: np.random.Generator, extra_edges: float
                           ) -> tuple[np.ndarray, np.ndarray]:
  """(senders, receivers) of a random tree on n nodes plus `extra_edges` chords per 10 nodes."""
  tree = np.stack([np.arange(1, n), rng.integers(0, np.arange(1, n))], 1)
  chords = rng.integers(0, n, size=(int(extra_edges * n / 10), 2))
  return graphs.undirected_edges(np.concatenate([tree, chords]))


def far_pair_graph(n: int, rng: np.random.Generator, extra_edges: float, hops: int) -> dict:
  """One random connected graph with two marked nodes, labelled 1 if they are > hops apart."""
  senders, receivers = random_connected_graph(n, rng, extra_edges)
  a, b = rng.choice(n, 2, replace=False)
  x = np.zeros((n, 2), np.float32)
  x[:, 1] = 1.0
  x[[a, b], 0] = 1.0
  label = int(hop_distance(senders, receivers, n, a, b) > hops)
  return {"x": x, "senders": senders, "receivers": receivers, "label": label}


@data.register("far_pair")
def far_pair(config, split: str) -> data.Dataset:
  o = _options(config, FAR_PAIR, "far_pair dataset")
  rng = np.random.default_rng(o["graph_seed"])
  want, found = o["num_graphs"] // 2, {0: [], 1: []}
  while min(len(v) for v in found.values()) < want:
    g = far_pair_graph(int(rng.integers(o["min_nodes"], o["max_nodes"] + 1)), rng,
                       o["extra_edges"], o["hops"])
    if len(found[g["label"]]) < want:
      found[g["label"]].append(g)
  all_graphs = [g for pair in zip(found[0], found[1]) for g in pair]
  rows = _split(np.arange(len(all_graphs)), split, {"train": (0, 0.8), "test": (0.8, 1.0)})
  max_edges = 2 * (o["max_nodes"] - 1 + int(o["extra_edges"] * o["max_nodes"] / 10))
  return graphs.padded_graph_dataset([all_graphs[i] for i in rows], num_classes=2,
                                     max_nodes=o["max_nodes"] + 1, max_edges=max_edges)


def colour_pair_graph(n: int, rng: np.random.Generator, extra_edges: float, hops: int,
                      colours: int, label: int) -> dict | None:
  """A random connected graph with random node colours and two marked nodes more than `hops`
  apart whose colours agree iff `label` is 1; None if no pair is that far apart."""
  senders, receivers = random_connected_graph(n, rng, extra_edges)
  a = int(rng.integers(n))
  far = np.flatnonzero(hop_distances(senders, receivers, n, a) > hops)
  if not len(far):
    return None
  b = int(rng.choice(far))
  colour = rng.integers(0, colours, n)
  colour[b] = colour[a] if label else (colour[a] + rng.integers(1, colours)) % colours
  x = np.zeros((n, colours + 1), np.float32)
  x[np.arange(n), colour] = 1.0
  x[[a, b], colours] = 1.0
  return {"x": x, "senders": senders, "receivers": receivers, "label": label}


@data.register("colour_pair")
def colour_pair(config, split: str) -> data.Dataset:
  o = _options(config, COLOUR_PAIR, "colour_pair dataset")
  rng = np.random.default_rng(o["graph_seed"])
  all_graphs = []
  while len(all_graphs) < o["num_graphs"]:
    g = colour_pair_graph(int(rng.integers(o["min_nodes"], o["max_nodes"] + 1)), rng,
                          o["extra_edges"], o["hops"], o["colours"], len(all_graphs) % 2)
    if g is not None:
      all_graphs.append(g)
  rows = _split(np.arange(len(all_graphs)), split, {"train": (0, 0.8), "test": (0.8, 1.0)})
  max_edges = 2 * (o["max_nodes"] - 1 + int(o["extra_edges"] * o["max_nodes"] / 10))
  return graphs.padded_graph_dataset([all_graphs[i] for i in rows], num_classes=2,
                                     max_nodes=o["max_nodes"] + 1, max_edges=max_edges)

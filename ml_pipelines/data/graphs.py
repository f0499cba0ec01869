"""Graph data in the two layouts the trainer batches.

(a) One whole graph, examples = node ids (`node_dataset`): examples are `{"node": int32, "label"}`
    and `info["graph"]` holds the graph arrays `{x [N, F], senders [E], receivers [E],
    edge_weight [E] (optional)}`. A node task returns them from `Task.constants`, so the trainer
    puts the graph on the devices once and every step runs the whole-graph forward, reading off the
    batch's nodes.
(b) Padded graphs as examples (`padded_graph_dataset`), for graph-level tasks: each graph is padded
    to fixed `(max_nodes, max_edges)` so examples stack into `x [B, N, F]`, `senders/receivers
    [B, E]`. As in jraph's `pad_with_graphs`, padding edges run from and to a padding node (the last
    node slot, so `max_nodes` exceeds every graph's node count) and are masked (`edge_mask`, weight
    0), so they change no real node; `node_mask` marks the real nodes for readouts.

Edge lists are directed (`senders -> receivers`); undirected graphs list both directions
(`undirected_edges`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ml_pipelines.data.dataset import ArraySource, Dataset, spec_of


def check_edges(senders: np.ndarray, receivers: np.ndarray, num_nodes: int) -> None:
  """Raises if an edge points outside `[0, num_nodes)`: under jit an out-of-range index is clamped
  (gather) or dropped (segment_sum) without a word."""
  for name, ids in (("senders", senders), ("receivers", receivers)):
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= num_nodes):
      bad = ids[(ids < 0) | (ids >= num_nodes)]
      raise ValueError(f"Edges point outside the graph's {num_nodes} nodes: {name} holds "
                       f"{bad[:5].tolist()} ({len(bad)} such edges); node ids run "
                       f"0..{num_nodes - 1}.")


def undirected_edges(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`[M, 2]` node pairs -> (senders, receivers) holding both directions, self loops dropped."""
  edges = np.asarray(edges, np.int32).reshape(-1, 2)
  edges = edges[edges[:, 0] != edges[:, 1]]
  both = np.unique(np.concatenate([edges, edges[:, ::-1]]), axis=0)
  return both[:, 0], both[:, 1]


def degree_one_hot(receivers: np.ndarray, num_nodes: int, max_degree: int) -> np.ndarray:
  """One-hot in-degree features `[N, max_degree + 1]`, degrees above `max_degree` clipped (the TU
  convention for graphs without node features)."""
  degree = np.minimum(np.bincount(receivers, minlength=num_nodes), max_degree)
  return np.eye(max_degree + 1, dtype=np.float32)[degree]


def node_dataset(graph: Mapping[str, np.ndarray], labels: np.ndarray, nodes: np.ndarray,
                 num_classes: int) -> Dataset:
  """Layout (a): examples are `nodes` of the one `graph`, labelled `labels[node]`."""
  check_edges(graph["senders"], graph["receivers"], len(graph["x"]))
  nodes = np.asarray(nodes, np.int32)
  return Dataset(source=ArraySource({"node": nodes,
                                     "label": np.asarray(labels, np.int32)[nodes]}),
                 element_spec={"node": ((), np.int32), "label": ((), np.int32)},
                 info={"graph": dict(graph), "num_nodes": len(graph["x"]),
                       "num_classes": num_classes})


def pad_graph(x: np.ndarray, senders: np.ndarray, receivers: np.ndarray, max_nodes: int,
              max_edges: int, edge_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """One graph padded to `max_nodes` (> its node count) and `max_edges` (>= its edge count)."""
  n, e = len(x), len(senders)
  check_edges(senders, receivers, n)
  if n >= max_nodes or e > max_edges:
    raise ValueError(f"A graph of {n} nodes and {e} edges does not fit max_nodes={max_nodes} "
                     f"(needs one padding node) and max_edges={max_edges}.")
  out = {"x": np.zeros((max_nodes, *np.shape(x)[1:]), np.float32),
         "node_mask": np.arange(max_nodes) < n,
         "senders": np.full(max_edges, max_nodes - 1, np.int32),
         "receivers": np.full(max_edges, max_nodes - 1, np.int32),
         "edge_mask": np.arange(max_edges) < e}
  out["x"][:n] = x
  out["senders"][:e], out["receivers"][:e] = senders, receivers
  if edge_weight is not None:
    out["edge_weight"] = np.zeros(max_edges, np.float32)
    out["edge_weight"][:e] = edge_weight
  return out


def unpad_graph(example: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The real nodes and edges of a padded graph (the inverse of `pad_graph`)."""
  n, keep = int(np.sum(example["node_mask"])), np.asarray(example["edge_mask"], bool)
  out = {"x": example["x"][:n], "senders": example["senders"][keep],
         "receivers": example["receivers"][keep]}
  if "edge_weight" in example:
    out["edge_weight"] = example["edge_weight"][keep]
  return out


def padded_graph_dataset(graphs: Sequence[Mapping[str, np.ndarray]], num_classes: int,
                         max_nodes: int | None = None, max_edges: int | None = None) -> Dataset:
  """Layout (b) from a list of graphs `{x, senders, receivers, label[, edge_weight]}`; sizes
  default to the largest graph's plus the padding node."""
  max_nodes = max_nodes or 1 + max(len(g["x"]) for g in graphs)
  max_edges = max_edges or max(len(g["senders"]) for g in graphs)
  examples = [{**pad_graph(g["x"], g["senders"], g["receivers"], max_nodes, max_edges,
                           g.get("edge_weight")), "label": np.int32(g["label"])} for g in graphs]
  arrays = {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}
  return Dataset(source=ArraySource(arrays), element_spec=spec_of(examples[0]),
                 info={"num_classes": num_classes, "max_nodes": max_nodes, "max_edges": max_edges,
                       "num_features": arrays["x"].shape[-1]})

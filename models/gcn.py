"""Graph convolutional networks (Kipf & Welling 2017, Eq. 9; official code tkipf/gcn).

- `gcn`: node classification on one whole graph, `softmax(Â ReLU(Â X W0) W1)` with dropout on each
  layer's input, Â = D^-1/2 (A + I) D^-1/2. Input: the graph dict `{x [N, F], senders [E],
  receivers [E], edge_weight [E] (optional)}`; output: logits `[N, C]`.
- `gcn_graph_classifier`: graph classification on padded graphs `{x [B, N, F], node_mask [B, N],
  senders, receivers, edge_mask [B, E]}`: GCN layers with ReLU, a masked mean over each graph's real
  nodes, then a linear head; logits `[B, C]`.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

import models
from models.message_passing import GCNConv, edge_weights


class GCN(nnx.Module):
  """`len(hidden) + 1` GCN layers: ReLU between them, dropout before each."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (16,),
               dropout: float = 0.5, rngs: nnx.Rngs):
    sizes = (in_features, *hidden, num_classes)
    self.layers = nnx.List([GCNConv(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def node_features(self, graph: dict, layers) -> jnp.ndarray:
    h, w = graph["x"], edge_weights(graph)
    for i, layer in enumerate(layers):
      if i:
        h = nnx.relu(h)
      h = layer(self.dropout(h), graph["senders"], graph["receivers"], w)
    return h

  def __call__(self, graph: dict) -> jnp.ndarray:
    return self.node_features(graph, self.layers)


class GCNGraphClassifier(GCN):
  """GCN layers (ReLU after each) -> masked mean over real nodes -> linear head."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (64, 64),
               dropout: float = 0.0, rngs: nnx.Rngs):
    super().__init__(in_features=in_features, num_classes=hidden[-1], hidden=hidden[:-1],
                     dropout=dropout, rngs=rngs)
    self.head = nnx.Linear(hidden[-1], num_classes, rngs=rngs)

  def __call__(self, graph: dict) -> jnp.ndarray:
    h = nnx.relu(self.node_features(graph, self.layers))
    mask = graph["node_mask"].astype(h.dtype)[..., None]
    pooled = jnp.sum(h * mask, axis=-2) / jnp.maximum(jnp.sum(mask, axis=-2), 1)
    return self.head(pooled)


models.register("gcn", GCN)
models.register("gcn_graph_classifier", GCNGraphClassifier)

"""Baselines of the N² configs: graph attention networks and a graph-blind MLP.

GAT (Veličković et al. 2018, "Graph Attention Networks", Eqs. 1-6): per head k,

    e_ij = LeakyReLU_0.2(a_k^T [W_k h_i ; W_k h_j]),  α_ij = softmax_{j ∈ N(i) ∪ {i}} e_ij,
    h'_i = ELU(||_k Σ_j α_ij W_k h_j)          (the last layer averages its heads, no ELU)

with dropout on every layer's input and on α (0.6 in the paper). Edges are the padded lists of
`ml_pipelines/data/graphs.py` (`senders -> receivers`, padding edges masked out of the softmax);
self loops are added to every node.

- `gat` / `mlp`: node classification on one whole graph `{x [N, F], senders [E], receivers [E]}`,
  logits `[N, C]`.
- `gat_graph_classifier` / `mlp_graph_classifier`: padded graphs `{x [B, N, F], node_mask, senders,
  receivers, edge_mask}`: the layers (ELU / ReLU after each), a masked mean over real nodes, a
  linear head; logits `[B, C]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models.message_passing import edge_weights


def masked_mean(h: jax.Array, node_mask: jax.Array) -> jax.Array:
  """Mean of `h [..., N, D]` over the nodes where `node_mask [..., N]` is true."""
  mask = node_mask.astype(h.dtype)[..., None]
  return jnp.sum(h * mask, axis=-2) / jnp.maximum(jnp.sum(mask, axis=-2), 1)


class GATConv(nnx.Module):
  """One multi-head attention layer on `x [N, F]` (vmapped over padded graphs by the caller)."""

  def __init__(self, in_features: int, out_features: int, heads: int, concat: bool,
               dropout: float, *, rngs: nnx.Rngs):
    init = nnx.initializers.glorot_uniform()
    self.linear = nnx.Linear(in_features, heads * out_features, use_bias=False, rngs=rngs)
    self.att_src = nnx.Param(init(rngs.params(), (heads, out_features)))
    self.att_dst = nnx.Param(init(rngs.params(), (heads, out_features)))
    self.bias = nnx.Param(jnp.zeros([heads * out_features if concat else out_features]))
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.heads, self.out_features, self.concat = heads, out_features, concat

  def __call__(self, x, senders, receivers, edge_mask):
    """`x [N, F]` with edges `[E]`, or padded graphs `x [B, N, F]` with edges `[B, E]`."""
    n = x.shape[-2]
    h = self.linear(x).reshape(*x.shape[:-1], self.heads, self.out_features)
    attend = jax.vmap(_attention, (0, 0, 0, 0, None, None)) if x.ndim == 3 else _attention
    senders, receivers, weights = attend(h, senders, receivers, edge_mask, self.att_src[...],
                                         self.att_dst[...])
    weights = self.dropout(weights)

    def gather(h, s, r, w):
      return jax.ops.segment_sum(w[..., None] * h[s], r, num_segments=n)
    out = (jax.vmap(gather) if x.ndim == 3 else gather)(h, senders, receivers, weights)
    out = out.reshape(*out.shape[:-2], -1) if self.concat else jnp.mean(out, axis=-2)
    return out + self.bias[...]


def _attention(h, senders, receivers, edge_mask, att_src, att_dst):
  """Self loops appended; α `[E + N, heads]`, softmax over each receiver's incoming edges."""
  n = h.shape[0]
  loops = jnp.arange(n, dtype=senders.dtype)
  senders, receivers = jnp.concatenate([senders, loops]), jnp.concatenate([receivers, loops])
  valid = jnp.concatenate([edge_mask, jnp.ones([n], bool)])[:, None]
  logits = jnp.sum(h * att_dst, -1)[receivers] + jnp.sum(h * att_src, -1)[senders]
  logits = jnp.where(valid, nnx.leaky_relu(logits, 0.2), -jnp.inf)
  top = jax.ops.segment_max(logits, receivers, num_segments=n)
  weights = jnp.where(valid, jnp.exp(logits - top[receivers]), 0.0)
  return senders, receivers, weights / jax.ops.segment_sum(weights, receivers,
                                                          num_segments=n)[receivers]


class GAT(nnx.Module):
  """`len(hidden) + 1` attention layers, ELU between them, dropout before each."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (8,),
               heads: int = 8, out_heads: int = 1, dropout: float = 0.6, rngs: nnx.Rngs):
    sizes, layers = in_features, []
    for width in hidden:
      layers.append(GATConv(sizes, width, heads, True, dropout, rngs=rngs))
      sizes = width * heads
    layers.append(GATConv(sizes, num_classes, out_heads, False, dropout, rngs=rngs))
    self.layers = nnx.List(layers)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def node_features(self, graph: dict) -> jax.Array:
    h, mask = graph["x"], edge_weights(graph) != 0
    for i, layer in enumerate(self.layers):
      h = layer(self.dropout(nnx.elu(h) if i else h), graph["senders"], graph["receivers"], mask)
    return h

  def __call__(self, graph: dict) -> jax.Array:
    return self.node_features(graph)


class GATGraphClassifier(GAT):
  """GAT layers (ELU after each) -> masked mean over real nodes -> linear head."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (16, 16),
               heads: int = 4, dropout: float = 0.0, rngs: nnx.Rngs):
    super().__init__(in_features=in_features, num_classes=hidden[-1] * heads, hidden=hidden[:-1],
                     heads=heads, out_heads=1, dropout=dropout, rngs=rngs)
    self.head = nnx.Linear(hidden[-1] * heads, num_classes, rngs=rngs)

  def __call__(self, graph: dict) -> jax.Array:
    return self.head(masked_mean(nnx.elu(self.node_features(graph)), graph["node_mask"]))


class MLP(nnx.Module):
  """The graph-blind baseline: Linear layers with ReLU and dropout on node features alone."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (64,),
               dropout: float = 0.5, rngs: nnx.Rngs):
    sizes = (in_features, *hidden, num_classes)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def node_features(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(self.dropout(nnx.relu(x) if i else x))
    return x

  def __call__(self, graph: dict) -> jax.Array:
    return self.node_features(graph["x"])


class MLPGraphClassifier(MLP):
  """Per-node MLP (ReLU after each layer) -> masked mean over real nodes -> linear head."""

  def __init__(self, *, in_features: int, num_classes: int, hidden: tuple[int, ...] = (64, 64),
               dropout: float = 0.0, rngs: nnx.Rngs):
    super().__init__(in_features=in_features, num_classes=hidden[-1], hidden=hidden[:-1],
                     dropout=dropout, rngs=rngs)
    self.head = nnx.Linear(hidden[-1], num_classes, rngs=rngs)

  def __call__(self, graph: dict) -> jax.Array:
    return self.head(masked_mean(nnx.relu(self.node_features(graph["x"])), graph["node_mask"]))


models.register("gat", GAT)
models.register("gat_graph_classifier", GATGraphClassifier)
models.register("mlp", MLP)
models.register("mlp_graph_classifier", MLPGraphClassifier)

"""Message passing over padded edge lists with `jax.ops.segment_sum` (no sparse matrices).

A graph is node features `x [N, F]` and directed edges `senders [E] -> receivers [E]` with weights
`w [E]`; undirected graphs list both directions. Sizes are static, so padded graphs stack and jit:
padding edges point at a padding (dummy) node and carry weight 0, so they change no real node
(jraph's padding convention, without depending on jraph). Node i receives

    y_i = AGG_{e : receivers[e] = i}  w_e x_{senders[e]}          (AGG = sum, mean or max)

GCN (Kipf & Welling 2017, "Semi-Supervised Classification with Graph Convolutional Networks",
Eq. 2): `H' = D^-1/2 (A + I) D^-1/2 H W`, D the degree of A + I. With self loops added,
edge (j -> i) gets `w_ji / sqrt(d_i d_j)`, d_i = 1 + sum of the weights into i (PyG's `gcn_norm`
with the default source-to-target flow). A batch of padded graphs `[B, N, F]` uses `jax.vmap`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def aggregate(messages: jax.Array, receivers: jax.Array, num_nodes: int,
              how: str = "sum") -> jax.Array:
  """`[E, F]` messages -> `[N, F]`: sum, mean or max over each node's incoming edges (0 if none)."""
  if how == "sum":
    return jax.ops.segment_sum(messages, receivers, num_segments=num_nodes)
  if how == "mean":
    total = jax.ops.segment_sum(messages, receivers, num_segments=num_nodes)
    count = jax.ops.segment_sum(jnp.ones_like(receivers, messages.dtype), receivers,
                                num_segments=num_nodes)
    return total / jnp.maximum(count, 1)[:, None]
  if how == "max":
    out = jax.ops.segment_max(messages, receivers, num_segments=num_nodes)
    return jnp.where(jnp.isfinite(out), out, 0)
  raise ValueError(f"Unknown aggregation {how!r}; use 'sum', 'mean' or 'max'.")


def propagate(x: jax.Array, senders: jax.Array, receivers: jax.Array, weights: jax.Array,
              how: str = "sum") -> jax.Array:
  """`y_i = AGG_{e: receivers[e] = i} w_e x_{senders[e]}` for `x [N, F]`."""
  return aggregate(weights[:, None] * x[senders], receivers, x.shape[0], how)


def gcn_normalise(senders: jax.Array, receivers: jax.Array, weights: jax.Array, num_nodes: int
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Edges of `D^-1/2 (A + I) D^-1/2`: self loops (weight 1) appended, weights normalised.

  The input edge list should hold no self loops. Padding edges (weight 0) stay weight 0.
  """
  loops = jnp.arange(num_nodes, dtype=senders.dtype)
  senders = jnp.concatenate([senders, loops])
  receivers = jnp.concatenate([receivers, loops])
  weights = jnp.concatenate([weights, jnp.ones([num_nodes], weights.dtype)])
  degree = jax.ops.segment_sum(weights, receivers, num_segments=num_nodes)
  inv_sqrt = jax.lax.rsqrt(degree)  # >= 1 thanks to the self loop
  return senders, receivers, inv_sqrt[senders] * weights * inv_sqrt[receivers]


def edge_weights(graph: dict) -> jax.Array:
  """The graph's `edge_weight`, or ones; zero on padding edges when it has an `edge_mask`."""
  w = graph.get("edge_weight")
  if w is None:
    w = jnp.ones(graph["senders"].shape, jnp.float32)
  if "edge_mask" in graph:
    w = w * graph["edge_mask"].astype(w.dtype)
  return w


class GCNConv(nnx.Module):
  """One GCN layer `D^-1/2 (A + I) D^-1/2 X W + b` on `x [N, F]` or padded graphs `x [B, N, F]`
  (then the edge arrays are `[B, E]`)."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(in_features, out_features, use_bias=False, rngs=rngs)
    self.bias = nnx.Param(jnp.zeros([out_features]))

  def __call__(self, x, senders, receivers, weights):
    h = self.linear(x)

    def one(h, s, r, w):
      return propagate(h, *gcn_normalise(s, r, w, h.shape[0]))
    if x.ndim == 3:
      one = jax.vmap(one)
    return one(h, senders, receivers, weights) + self.bias[...]

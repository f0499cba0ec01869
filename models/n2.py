"""N²: dynamic message passing with learnable pseudo nodes (Sun et al., NeurIPS 2024, "Towards
Dynamic Message Passing on Graphs", arXiv 2410.23686; official code sunjss/N2, `model/modules.py`
and `model/layers.py`, whose `N2Node` / `N2Graph` forwards ours reproduce on identical weights).

Graph nodes carry a state `h [n, q]` and features `f [n, d]`; `n_p` pseudo nodes carry `n_q`
copies of a state, `P [n_q, n_p, q]` (a single copy, the learnt `[1, n_p, q]` start, before the
first step). The proximity of two state sets combines the copies with learnt weights λ [n_q]:

    ψ(a, b)_ij = Σ_c λ_c <a_{c,i}, b_{c,j}> / (n_q q)        (a single copy broadcasts over c)

and every row whose sum exceeds 10⁴ in magnitude is scaled down to sum ±10⁴ (the scale is not
differentiated, as under the official `torch.no_grad`). One recurrent step, the same weights applied
`T` times (N: the number of real nodes of each graph):

    g0 = ψ(P, h) f / N;  u = ψ(P, P) g0;  P ← LN(P + Δ(u));  ι = φ(u);  insp = ψ(h, P) ι
    z  = Â [f ; insp ; h]                      (Â = D^-1/2 (A + I) D^-1/2, local passing)
    h' = LN(h + φ(z))
    g  = [ψ(P, h') z / N ; ι];  u2 = ψ(P, P) g;  P ← LN(P + Δ2(u2));  v = ψ(h', P) φ2(u2)
    f  ← LN(f + φ(v));  h ← LN(h' + v)

with φ, Δ Linear → LeakyReLU(0.01) → Dropout and Δ's `q·n_q` outputs read as `[q, n_q]` (the flat
index is `dim·n_q + copy`). Node logits are `ψ(h, C)` against class neurons `C [n_c, classes, q]`;
the graph readout mixes the `n_q·n_p` pseudo-node copies into one state per graph (a linear map per
state dimension), LayerNorm, then `ψ(·, C)`. The parameter count does not depend on T.

Inputs are the graph layouts of `ml_pipelines/data/graphs.py`: `n2_node` takes one whole graph
`{x [N, F], senders [E], receivers [E]}` and returns logits `[N, classes]`; `n2_graph` takes padded
graphs `{x [B, N, F], node_mask [B, N], senders / receivers / edge_mask [B, E]}` and returns `[B,
classes]`. Edge weights are ignored as in the official code (every edge weighs 1 before the
normalisation). The official `time_embedding` and `edge_wise_ff` layers are never used in its
forward; they are not built here (`OfficialN2` skips them when importing a state dict).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from models import convert
from models._vision_layers import layer_norm, linear
from models.message_passing import edge_weights, gcn_normalise, propagate

ROW_CLIP = 1e4


def proximity(a: jax.Array, b: jax.Array, lam: jax.Array, q_dim: int) -> jax.Array:
  """ψ(a, b) `[..., n_a, n_b]` for states `a [..., c_a, n_a, q]`, `b [..., c_b, n_b, q]` with
  c ∈ {1, n_q}, rows clipped to |Σ_j ψ_ij| <= 10⁴ by a constant (non-differentiated) scale."""
  n_q = lam.shape[0]
  w = lam[:, None, None]
  if a.shape[-3] == 1:
    out = a[..., 0, :, :] @ jnp.swapaxes(jnp.sum(w * b, axis=-3), -1, -2)
  elif b.shape[-3] == 1:
    out = jnp.sum(w * a, axis=-3) @ jnp.swapaxes(b[..., 0, :, :], -1, -2)
  else:
    out = jnp.sum(w * (a @ jnp.swapaxes(b, -1, -2)), axis=-3)
  out = out / (n_q * q_dim)
  total = jnp.abs(jnp.sum(out, axis=-1, keepdims=True))
  scale = jnp.where(total > ROW_CLIP, ROW_CLIP / jnp.maximum(total, ROW_CLIP), 1.0)
  return out * jax.lax.stop_gradient(scale)


def _unit_weights(graph: dict) -> jax.Array:
  """1 on every real edge, 0 on padding edges (the official code ignores edge weights)."""
  return (edge_weights(graph) != 0).astype(jnp.asarray(graph["x"]).dtype)


class Proximity(nnx.Module):
  """ψ with its own copy weights λ ~ N(0, 1) (the official `PathIntegral`)."""

  def __init__(self, q_dim: int, n_q: int, *, rngs: nnx.Rngs):
    self.lambda_copies = nnx.Param(jax.random.normal(rngs.params(), (n_q,)))
    self.q_dim = q_dim

  def __call__(self, a, b):
    return proximity(a, b, self.lambda_copies[...], self.q_dim)


class Dense(nnx.Module):
  """Linear -> LeakyReLU(0.01) -> Dropout."""

  def __init__(self, d_in: int, d_out: int, dropout: float, *, rngs: nnx.Rngs):
    self.linear = linear(d_in, d_out, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x):
    return self.dropout(nnx.leaky_relu(self.linear(x), 0.01))


class Communicator(nnx.Module):
  """Pseudo nodes talk among themselves: `u = ψ(P, P) g`, the displacement `Δ(u)` as `[n_q, n_p,
  q]` and the value `φ(u)`."""

  def __init__(self, d_in: int, d_out: int, q_dim: int, n_q: int, dropout: float, *,
               rngs: nnx.Rngs):
    self.pnode_agg = Proximity(q_dim, n_q, rngs=rngs)
    self.glob2disp = Dense(d_in, q_dim * n_q, dropout, rngs=rngs)
    self.glob2value = Dense(d_in, d_out, dropout, rngs=rngs)
    self.q_dim, self.n_q = q_dim, n_q

  def __call__(self, pnodes, glob):
    u = self.pnode_agg(pnodes, pnodes) @ glob                       # [b, n_p, d_in]
    disp = self.glob2disp(u).reshape(*u.shape[:-1], self.q_dim, self.n_q)
    return jnp.moveaxis(disp, -1, -3), self.glob2value(u)            # [b, n_q, n_p, q]


class N2Step(nnx.Module):
  """The shared recurrent layer (official `NodePseudoSubsystem`): collect, displace, dispatch."""

  def __init__(self, d_model: int, q_dim: int, n_q: int, dropout: float, *, rngs: nnx.Rngs):
    self.collection1 = Proximity(q_dim, n_q, rngs=rngs)
    self.pnode_agg1 = Communicator(d_model, d_model, q_dim, n_q, dropout, rngs=rngs)
    self.inspection = Proximity(q_dim, n_q, rngs=rngs)
    self.hstate_interface = Dense(2 * d_model + q_dim, q_dim, dropout, rngs=rngs)
    self.collection2 = Proximity(q_dim, n_q, rngs=rngs)
    self.pnode_agg2 = Communicator(3 * d_model + q_dim, q_dim, q_dim, n_q, dropout, rngs=rngs)
    self.dispatch = Proximity(q_dim, n_q, rngs=rngs)
    self.feat_ff = Dense(q_dim, d_model, dropout, rngs=rngs)
    for name, dim in (("phidden_norm", q_dim), ("hidden_norm", q_dim), ("pout_norm", q_dim),
                      ("out_norm", q_dim), ("feat_norm", d_model)):
      setattr(self, name, layer_norm(dim, rngs=rngs))

  def __call__(self, f, h, pnodes, adjacency, mask, count):
    """`f [b, n, d]`, `h [b, n, q]`, `pnodes [1 | b, 1 | n_q, n_p, q]`, `adjacency(x) = Â x`,
    `mask [b, n, 1]` (or None), `count` the real nodes per graph -> (f, h, pnodes)."""
    g0 = self.collection1(pnodes, h[:, None]) @ f / count
    disp, iota = self.pnode_agg1(pnodes, g0)
    pnodes = self.phidden_norm(pnodes + disp)
    insp = self.inspection(h[:, None], pnodes) @ iota
    z = adjacency(jnp.concatenate([f, insp, h], axis=-1))
    hidden = self.hidden_norm(self.hstate_interface(z) + h)
    if mask is not None:
      hidden = hidden * mask
    glob = jnp.concatenate([self.collection2(pnodes, hidden[:, None]) @ z / count, iota], -1)
    disp, value = self.pnode_agg2(pnodes, glob)
    pnodes = self.pout_norm(pnodes + disp)
    value = self.dispatch(hidden[:, None], pnodes) @ value
    f = self.feat_norm(f + self.feat_ff(value))
    h = self.out_norm(hidden + value)
    if mask is not None:
      f, h = f * mask, h * mask
    return f, h, pnodes


class N2Node(nnx.Module):
  """N² for node tasks on one whole graph: logits `[N, num_classes]` (official `N2Node`)."""

  def __init__(self, *, in_features: int, num_classes: int, d_model: int = 128, q_dim: int = 64,
               n_q: int = 8, n_c: int = 1, n_pnode: int = 256, T: int = 4, dropout: float = 0.4,
               rngs: nnx.Rngs):
    if T < 1:
      raise ValueError(f"N² needs at least one recurrent step, got T={T}.")
    if n_c not in (1, n_q):
      raise ValueError(f"n_c (copies of the class neurons) must be 1 or n_q={n_q}, got {n_c}.")
    self.node_state_interface = Dense(in_features, q_dim, dropout, rngs=rngs)
    self.feat_ff = Dense(in_features, d_model, dropout, rngs=rngs)
    self.pnode_state = nnx.Param(jax.random.normal(rngs.params(), (1, n_pnode, q_dim)))
    self.node_state_updater = N2Step(d_model, q_dim, n_q, dropout, rngs=rngs)
    self.class_neuron = nnx.Param(jax.random.normal(rngs.params(), (n_c, num_classes, q_dim)))
    self.out_ff = Proximity(q_dim, n_q, rngs=rngs)
    self.T = T

  def states(self, x, senders, receivers, weights, mask):
    """The recurrent loop on `x [b, n, F]` with edges `[b, E]`: (f, h, pnodes) after T steps."""
    n = x.shape[1]
    edges = jax.vmap(lambda s, r, w: gcn_normalise(s, r, w, n))(senders, receivers, weights)

    def adjacency(v):
      return jax.vmap(propagate)(v, *edges)
    h, f = self.node_state_interface(x), self.feat_ff(x)
    count = n
    if mask is not None:
      h, f = h * mask, f * mask
      count = jnp.sum(mask, axis=-2, keepdims=True)
    pnodes = self.pnode_state[...]
    for _ in range(self.T):
      f, h, pnodes = self.node_state_updater(f, h, pnodes, adjacency, mask, count)
    return f, h, pnodes

  def __call__(self, graph: dict) -> jax.Array:
    batch = {k: graph[k][None] for k in ("x", "senders", "receivers")}
    _, h, _ = self.states(batch["x"], batch["senders"], batch["receivers"],
                          _unit_weights(graph)[None], None)
    return self.out_ff(h[:, None], self.class_neuron[...])[0]


class N2Graph(N2Node):
  """N² for graph tasks on padded graphs: logits `[B, num_classes]` (official `N2Graph`); the class
  neurons have n_q copies unless `n_c` says 1."""

  def __init__(self, *, in_features: int, num_classes: int, d_model: int = 128, q_dim: int = 64,
               n_q: int = 8, n_c: int | None = None, n_pnode: int = 256, T: int = 4,
               dropout: float = 0.4, rngs: nnx.Rngs):
    super().__init__(in_features=in_features, num_classes=num_classes, d_model=d_model,
                     q_dim=q_dim, n_q=n_q, n_c=n_q if n_c is None else n_c, n_pnode=n_pnode, T=T,
                     dropout=dropout, rngs=rngs)
    self.pnode_agg = Dense(n_pnode * n_q, 1, dropout, rngs=rngs)
    self.out_norm = layer_norm(q_dim, rngs=rngs)

  def __call__(self, graph: dict) -> jax.Array:
    mask = graph["node_mask"].astype(jnp.float32)[..., None]
    _, _, pnodes = self.states(graph["x"], graph["senders"], graph["receivers"],
                               _unit_weights(graph), mask)
    b = graph["x"].shape[0]
    pnodes = jnp.broadcast_to(pnodes, (b, *pnodes.shape[-3:]))       # [b, n_q, n_p, q]
    copies = jnp.transpose(pnodes, (0, 3, 1, 2)).reshape(b, pnodes.shape[-1], -1)
    pooled = self.out_norm(jnp.swapaxes(self.pnode_agg(copies), -1, -2))   # [b, 1, q]
    return self.out_ff(pooled[:, None], self.class_neuron[...]).reshape(b, -1)


class OfficialN2(convert.TorchStateDict):
  """Reads sunjss/N2 state dicts: `nn.Sequential(Linear, ...)` keys `x.0.weight` are our
  `x/linear/kernel`, λ `[n_q, 1, 1]` is our `[n_q]`, and the two layers the official forward never
  uses are skipped."""
  ignore = re.compile(r"(time_embedding|edge_wise_ff)\.")

  def rename_file(self, theirs):
    return {re.sub(r"\.0\.(weight|bias)$", r".linear.\1", k): v for k, v in theirs.items()}

  def to_ours(self, path, arrays):
    if path.endswith("lambda_copies"):
      return np.reshape(arrays[0], -1)
    return super().to_ours(path, arrays)


models.register("n2_node", N2Node)
models.register("n2_graph", N2Graph)

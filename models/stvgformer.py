"""STVGFormer: spatio-temporal video grounding with static and dynamic branches (Lin et al., PIC
2022 technical report, arXiv 2207.02756).

From the report's abstract and Figure 1: a static branch does cross-modal understanding inside
single frames (appearance) and predicts the box of each frame; a dynamic branch does it across
frames (motion) and predicts the start and end of the moment; both are cross-modal transformers,
and a static-dynamic interaction block lets each branch query the other. The layer-level design
is [inferred] from TubeDETR (Yang et al., CVPR 2022; antoyang/TubeDETR `models/tubedetr.py`,
`models/transformer.py`), the open baseline on HC-STVG:

- towers: per-frame tokens `F_t` (class token first) of a registered image model and text tokens
  `W` of a registered text encoder, projected to `dim`;
- static encoder: `static_layers` transformer layers over `[F_t ; W]`, frame by frame (early
  fusion);
- dynamic encoder: `dynamic_layers` layers over `[g_1 .. g_T ; W]`, `g_t` the frame's class
  token plus a learned time embedding;
- decoder, `decoder_layers` layers, one static query and one dynamic query per frame (a learned
  query plus the time embedding). A layer: dynamic queries self-attend over time; static queries
  cross-attend to their own frame's static memory, dynamic queries to the dynamic memory; then the
  interaction block `q_s <- q_s + CrossAttn(q_s, q_d)`, `q_d <- q_d + CrossAttn(q_d, q_s)` (each
  query sees every frame's query of the other branch); then a feed-forward block per branch;
- heads at every layer (TubeDETR's auxiliary outputs): boxes `sigmoid(MLP_3(q_s))` as (cx, cy, w,
  h), start/end logits `Linear(q_d) -> 2`.

`branches`: "both" (default), "static" (no dynamic branch: the start/end head reads the static
queries, so the moment comes from per-frame scores) or "dynamic" (no static branch: the box head
reads the dynamic queries). `interaction=False` drops the interaction block.
Post-LN layers with ReLU feed-forward and dropout, as DETR/TubeDETR's transformer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import linear
from models.tmvm import frame_tokens, normalise_frames

BRANCHES = ("both", "static", "dynamic")


class Attention(nnx.Module):
  """Multi-head attention (nn.MultiheadAttention: q/k/v/out projections) with a key mask."""

  def __init__(self, dim, heads, *, rngs):
    self.heads = heads
    self.q, self.k, self.v = (linear(dim, dim, rngs=rngs) for _ in range(3))
    self.out = linear(dim, dim, rngs=rngs)

  def __call__(self, x, context, context_mask=None):
    b, n, d = x.shape
    split = lambda t: t.reshape(b, t.shape[1], self.heads, d // self.heads)  # noqa: E731
    mask = None if context_mask is None else context_mask[:, None, None, :]
    o = jax.nn.dot_product_attention(split(self.q(x)), split(self.k(context)),
                                     split(self.v(context)), mask=mask)
    return self.out(o.reshape(b, n, d))


class Residual(nnx.Module):
  """`LayerNorm(x + Dropout(f(x, ...)))` (post-LN)."""

  def __init__(self, dim, dropout, *, rngs):
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x, y):
    return self.norm(x + self.drop(y))


class FeedForward(nnx.Module):
  def __init__(self, dim, hidden, dropout, *, rngs):
    self.fc1, self.fc2 = linear(dim, hidden, rngs=rngs), linear(hidden, dim, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.res = Residual(dim, dropout, rngs=rngs)

  def __call__(self, x):
    return self.res(x, self.fc2(self.drop(jax.nn.relu(self.fc1(x)))))


class EncoderLayer(nnx.Module):
  def __init__(self, dim, heads, hidden, dropout, *, rngs):
    self.attn = Attention(dim, heads, rngs=rngs)
    self.res = Residual(dim, dropout, rngs=rngs)
    self.ffn = FeedForward(dim, hidden, dropout, rngs=rngs)

  def __call__(self, x, mask):
    return self.ffn(self.res(x, self.attn(x, x, mask)))


class CrossBlock(nnx.Module):
  """`x <- Residual(x, CrossAttn(x, memory))`."""

  def __init__(self, dim, heads, dropout, *, rngs):
    self.attn = Attention(dim, heads, rngs=rngs)
    self.res = Residual(dim, dropout, rngs=rngs)

  def __call__(self, x, memory, mask=None):
    return self.res(x, self.attn(x, memory, mask))


class DecoderLayer(nnx.Module):
  def __init__(self, dim, heads, hidden, dropout, *, static, dynamic, interaction, rngs):
    make = lambda: CrossBlock(dim, heads, dropout, rngs=rngs)  # noqa: E731
    self.static_cross = make() if static else None
    self.static_ffn = FeedForward(dim, hidden, dropout, rngs=rngs) if static else None
    self.dynamic_self = make() if dynamic else None
    self.dynamic_cross = make() if dynamic else None
    self.dynamic_ffn = FeedForward(dim, hidden, dropout, rngs=rngs) if dynamic else None
    self.static_from_dynamic = make() if interaction else None
    self.dynamic_from_static = make() if interaction else None

  def __call__(self, qs, qd, static_memory, static_mask, dynamic_memory, dynamic_mask,
               frame_mask):
    """qs, qd [B, T, D]; static_memory [B*T, N, D]; dynamic_memory [B, T + L, D]."""
    b, t, d = (qs if qs is not None else qd).shape
    if qd is not None:
      qd = self.dynamic_self(qd, qd, frame_mask)
      qd = self.dynamic_cross(qd, dynamic_memory, dynamic_mask)
    if qs is not None:
      qs = self.static_cross(qs.reshape(b * t, 1, d), static_memory, static_mask).reshape(b, t, d)
    if self.static_from_dynamic is not None:
      qs, qd = (self.static_from_dynamic(qs, qd, frame_mask),
                self.dynamic_from_static(qd, qs, frame_mask))
    if qs is not None:
      qs = self.static_ffn(qs)
    if qd is not None:
      qd = self.dynamic_ffn(qd)
    return qs, qd


class BoxHead(nnx.Module):
  """DETR's 3-layer box MLP, sigmoid -> (cx, cy, w, h) in [0, 1]."""

  def __init__(self, dim, *, rngs):
    self.layers = nnx.List([linear(dim, dim, rngs=rngs), linear(dim, dim, rngs=rngs),
                            linear(dim, 4, rngs=rngs)])

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return jax.nn.sigmoid(self.layers[-1](x))


class STVGFormer(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, dim: int = 256, heads: int = 8,
               static_layers: int = 2, dynamic_layers: int = 2, decoder_layers: int = 2,
               ffn: int | None = None, dropout: float = 0.1, max_frames: int = 200,
               branches: str = "both", interaction: bool = True, rngs: nnx.Rngs):
    if branches not in BRANCHES:
      raise ValueError(f"branches={branches!r}; use one of {BRANCHES}.")
    static, dynamic = branches in ("both", "static"), branches in ("both", "dynamic")
    interaction = interaction and branches == "both"
    hidden = ffn or 4 * dim
    self.vision = models.build(dict(vision), rngs=rngs)
    self.text = models.build(dict(text), rngs=rngs)
    self.vision_proj = linear(self.vision.num_features, dim, rngs=rngs)
    self.text_proj = linear(self.text.num_features, dim, rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.time_embed = nnx.Param(init(rngs.params(), (max_frames, dim)))
    enc = lambda n: nnx.List([EncoderLayer(dim, heads, hidden, dropout, rngs=rngs)  # noqa: E731
                              for _ in range(n)])
    self.static_encoder = enc(static_layers) if static else None
    self.dynamic_encoder = enc(dynamic_layers) if dynamic else None
    self.static_query = nnx.Param(init(rngs.params(), (dim,))) if static else None
    self.dynamic_query = nnx.Param(init(rngs.params(), (dim,))) if dynamic else None
    self.decoder = nnx.List([
        DecoderLayer(dim, heads, hidden, dropout, static=static, dynamic=dynamic,
                     interaction=interaction, rngs=rngs) for _ in range(decoder_layers)])
    self.box_head = BoxHead(dim, rngs=rngs)
    self.sted_head = linear(dim, 2, rngs=rngs)
    self.branches = branches

  def __call__(self, video, frame_mask, ids, text_mask):
    """{"boxes": [layers, B, T, 4], "sted": [layers, B, T, 2]} for uint8 clips [B, T, H, W, 3]."""
    b, t = video.shape[:2]
    f = frame_tokens(self.vision, normalise_frames(video.reshape(b * t, *video.shape[2:])))
    f = self.vision_proj(f)                                     # [B*T, 1+P, D]
    w = self.text_proj(self.text(ids, text_mask))               # [B, L, D]
    d = f.shape[-1]
    time = self.time_embed[:t].astype(f.dtype)
    qs = qd = static_memory = static_mask = dynamic_memory = dynamic_mask = None
    if self.static_encoder is not None:
      wt = jnp.repeat(w, t, axis=0)
      static_memory = jnp.concatenate([f, wt], axis=1)
      static_mask = jnp.concatenate([jnp.ones(f.shape[:2], bool),
                                     jnp.repeat(text_mask, t, axis=0)], axis=1)
      for layer in self.static_encoder:
        static_memory = layer(static_memory, static_mask)
      qs = jnp.broadcast_to(self.static_query[...] + time, (b, t, d))
    if self.dynamic_encoder is not None:
      g = f[:, 0].reshape(b, t, d) + time
      dynamic_memory = jnp.concatenate([g, w], axis=1)
      dynamic_mask = jnp.concatenate([frame_mask, text_mask], axis=1)
      for layer in self.dynamic_encoder:
        dynamic_memory = layer(dynamic_memory, dynamic_mask)
      qd = jnp.broadcast_to(self.dynamic_query[...] + time, (b, t, d))
    boxes, steds = [], []
    for layer in self.decoder:
      qs, qd = layer(qs, qd, static_memory, static_mask, dynamic_memory, dynamic_mask, frame_mask)
      boxes.append(self.box_head(qs if qs is not None else qd))
      steds.append(self.sted_head(qd if qd is not None else qs))
    return {"boxes": jnp.stack(boxes), "sted": jnp.stack(steds)}


@models.register("stvgformer")
def stvgformer(*, rngs: nnx.Rngs, **kw):
  """STVGFormer over registered towers (`vision`, `text` blocks)."""
  return STVGFormer(rngs=rngs, **kw)

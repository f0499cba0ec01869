"""BERT-style text encoder (Devlin et al. 2019) with optional cross-modal fusion layers.

Post-LN transformer with Hugging Face `BertModel`'s structure and names (`embeddings/
{word,position,token_type}_embeddings`, `embeddings/LayerNorm`, `encoder/layer/i/attention/
{self/{query,key,value}, output/{dense,LayerNorm}}`, `intermediate/dense`,
`output/{dense,LayerNorm}`), exact GELU, LayerNorm eps 1e-12. Layers `[0, fusion_layer)` encode
text alone (`mode="text"`), the rest fuse it with visual tokens (`mode="fusion"`) in one of two
ways (`fusion`):

* `"cross"` (ALBEF's XBert, salesforce/ALBEF `models/xbert.py`): each fusion layer also holds a
  cross-attention block (`crossattention/...`, keys and values from `encoder_width`-wide visual
  tokens) after its self-attention, h <- FFN(CrossAttn(SelfAttn(h), v)); matched within 1e-5 by
  tests/test_video_towers.py.
* `"concat"` (ALPRO, salesforce/ALPRO `src/modeling/xbert.py`, which hard-codes
  `has_cross_attention = False`, and `alpro_models.py`): the fusion layers are plain BERT layers
  run over the concatenation [text states; visual tokens] with the concatenated padding mask, so
  text and video attend to each other and to themselves; no cross-attention weights, and the
  visual tokens must be as wide as the text (`encoder_width == hidden_size`, 768 in ALPRO, which
  has no projection between the towers); matched within 1e-5 by tests/test_videoqa_fusion.py.

Converter `hf_bert`: Hugging Face `BertModel` state dicts (also saved inside a task model, keys
prefixed `bert.`), and ALPRO / ALBEF checkpoints, whose text tower is the `text_encoder.` keys
(`text_encoder.bert.` for a masked-LM tower); the pooler and the `position_ids` buffer are not
used. A `"concat"` model has no `crossattention` paths, so an ALPRO text encoder (which has no such
keys) loads into it and an ALBEF one into a `"cross"` model.

`model(ids, mask)` -> hidden states [B, L, D] of the text layers; `model.fuse(hidden, mask, visual,
visual_mask)` runs the fusion layers and returns the L text positions [B, L, D] (in `"concat"` the
video positions' outputs are dropped: ALPRO reads the fused [CLS], position 0, and its MLM head the
text positions).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import convert
from models._vision_layers import gelu, trunc_normal_init


def _dense(cin, cout, rngs, dtype):
  return nnx.Linear(cin, cout, kernel_init=trunc_normal_init(0.02), dtype=dtype, rngs=rngs)


def _ln(d, rngs, dtype):
  return nnx.LayerNorm(d, epsilon=1e-12, dtype=dtype, rngs=rngs)


class SelfProjections(nnx.Module):
  def __init__(self, dim, kv_dim, rngs, dtype):
    self.query = _dense(dim, dim, rngs, dtype)
    self.key = _dense(kv_dim, dim, rngs, dtype)
    self.value = _dense(kv_dim, dim, rngs, dtype)


class Output(nnx.Module):
  def __init__(self, cin, dim, rngs, dtype):
    self.dense = _dense(cin, dim, rngs, dtype)
    self.LayerNorm = _ln(dim, rngs, dtype)

  def __call__(self, h, residual):
    return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nnx.Module):
  """Multi-head attention of `x` over `context` (itself for self-attention), then dense + residual
  + LayerNorm. `context_mask` [B, Lc] bool marks real context tokens."""

  def __init__(self, dim, heads, kv_dim, rngs, dtype):
    self.heads = heads
    self.self = SelfProjections(dim, kv_dim, rngs, dtype)
    self.output = Output(dim, dim, rngs, dtype)

  def __call__(self, x, context, context_mask):
    b, n, d = x.shape
    split = lambda t: t.reshape(b, t.shape[1], self.heads, d // self.heads)  # noqa: E731
    q = split(self.self.query(x))
    k, v = split(self.self.key(context)), split(self.self.value(context))
    mask = context_mask[:, None, None, :]
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    return self.output(out.reshape(b, n, d), x)


class BertLayer(nnx.Module):
  def __init__(self, dim, heads, mlp, *, cross_width: int | None, rngs, dtype):
    self.attention = BertAttention(dim, heads, dim, rngs, dtype)
    self.crossattention = (BertAttention(dim, heads, cross_width, rngs, dtype)
                           if cross_width else None)
    self.intermediate = nnx.Module()
    self.intermediate.dense = _dense(dim, mlp, rngs, dtype)
    self.output = Output(mlp, dim, rngs, dtype)

  def __call__(self, x, mask, visual=None, visual_mask=None):
    x = self.attention(x, x, mask)
    if self.crossattention is not None:
      x = self.crossattention(x, visual, visual_mask)
    return self.output(gelu(self.intermediate.dense(x)), x)


class Embeddings(nnx.Module):
  def __init__(self, vocab, dim, max_len, rngs, dtype):
    init = nnx.initializers.normal(0.02)
    self.word_embeddings = nnx.Embed(vocab, dim, embedding_init=init, dtype=dtype, rngs=rngs)
    self.position_embeddings = nnx.Embed(max_len, dim, embedding_init=init, dtype=dtype, rngs=rngs)
    self.token_type_embeddings = nnx.Embed(2, dim, embedding_init=init, dtype=dtype, rngs=rngs)
    self.LayerNorm = _ln(dim, rngs, dtype)

  def __call__(self, ids):
    pos = jnp.arange(ids.shape[1])[None]
    x = (self.word_embeddings(ids) + self.position_embeddings(pos)
         + self.token_type_embeddings(jnp.zeros_like(ids)))
    return self.LayerNorm(x)


class Encoder(nnx.Module):
  def __init__(self, layers):
    self.layer = nnx.List(layers)


FUSIONS = ("cross", "concat")


class Bert(nnx.Module):
  """BERT encoder; `fusion_layer` = number of text-only layers (= depth: no fusion layers);
  `fusion` = how the later layers fuse visual tokens (module docstring)."""

  def __init__(self, *, vocab_size: int = 30522, hidden_size: int = 768, num_layers: int = 12,
               num_heads: int = 12, intermediate_size: int | None = None,
               max_position: int = 512, fusion_layer: int | None = None,
               encoder_width: int = 768, fusion: str = "cross", dtype=jnp.float32,
               rngs: nnx.Rngs):
    if fusion not in FUSIONS:
      raise ValueError(f"bert fusion={fusion!r}: expected one of {FUSIONS}")
    if fusion == "concat" and encoder_width != hidden_size:
      raise ValueError(f"bert fusion='concat' runs the text layers over the visual tokens, so they "
                       f"must be as wide as the text: encoder_width={encoder_width} != "
                       f"hidden_size={hidden_size}")
    dtype = jnp.dtype(dtype)
    self.fusion = fusion
    self.fusion_layer = num_layers if fusion_layer is None else int(fusion_layer)
    self.embeddings = Embeddings(vocab_size, hidden_size, max_position, rngs, dtype)
    mlp = intermediate_size or 4 * hidden_size
    cross = encoder_width if fusion == "cross" else None
    self.encoder = Encoder([
        BertLayer(hidden_size, num_heads, mlp, rngs=rngs, dtype=dtype,
                  cross_width=cross if i >= self.fusion_layer else None)
        for i in range(num_layers)])
    self.num_features = hidden_size

  def __call__(self, ids, mask):
    x = self.embeddings(ids)
    for layer in list(self.encoder.layer)[:self.fusion_layer]:
      x = layer(x, mask)
    return x

  def pooled(self, states, ids, mask):
    """The sentence feature: the [CLS] (first) state."""
    return states[:, 0]

  def fuse(self, hidden, mask, visual, visual_mask):
    """Fused text states [B, L, D] of text states `hidden` [B, L, D] (`mask` [B, L] bool) and
    visual tokens `visual` [B, N, Dv] (`visual_mask` [B, N] bool)."""
    layers = list(self.encoder.layer)[self.fusion_layer:]
    if self.fusion == "cross":
      for layer in layers:
        hidden = layer(hidden, mask, visual, visual_mask)
      return hidden
    length = hidden.shape[1]
    x = jnp.concatenate([hidden, visual.astype(hidden.dtype)], axis=1)
    joint = jnp.concatenate([mask, visual_mask.astype(mask.dtype)], axis=1)
    for layer in layers:
      x = layer(x, joint)
    return x[:, :length]


@models.register("bert_base")
def bert_base(*, rngs: nnx.Rngs, **kw):
  """BERT-base (768 wide, 12 layers, 12 heads); ALPRO fuses from layer 6 (`fusion_layer=6`,
  `fusion="concat"`)."""
  return Bert(rngs=rngs, **kw)


@convert.register("hf_bert")
class HFBert(convert.TorchStateDict):
  """Hugging Face BERT: our paths are its keys ('/' -> '.', kernel/scale/embedding -> weight)."""
  ignore = re.compile(r"(^pooler\.|position_ids$|^cls\.)")

  def keys(self, path):
    return (convert.torch_key(path.replace("/embedding", "/weight")),)

  def rename_file(self, theirs):
    if any(k.startswith("text_encoder.") for k in theirs):  # a whole ALPRO / ALBEF checkpoint
      theirs = {k[len("text_encoder."):]: v for k, v in theirs.items()
                if k.startswith("text_encoder.")}
    return {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in theirs.items()}

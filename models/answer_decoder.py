"""Answer generator for video QA: BERT layers with causal self-attention and cross-attention.

MCG (Yu et al., "Multi-granularity Contrastive Cross-modal Collaborative Generation for End-to-End
Long-term Video Question Answering", arXiv 2410.09379) generates the answer text instead of
classifying it (its "Cross-modal Collaborative Generation" module). No official code is public and
the paper's text could not be read here, so the decoder is our reading [inferred], built as the
BERT-initialisable answer decoders of ALBEF / BLIP (a `BertLMHeadModel`: every layer is causal
self-attention -> cross-attention to the encoder's tokens -> feed-forward, post-LN; prediction
head dense -> GELU -> LayerNorm -> vocabulary). Layers are `models.bert.BertLayer`, so BERT
checkpoints load by name through the `hf_bert` converter.

Two ways to run it, which must agree (`tests/test_videoqa_decoder.py`):
* `model(ids [B, L], mask [B, L], memory [B, M, Dm], memory_mask [B, M]) -> logits [B, L, V]`:
  teacher forcing, causal mask over the whole answer at once;
* `model.init_cache(memory, memory_mask, max_len)` and `model.step(tokens [B], t, cache) ->
  (logits [B, V], cache)`: one position at a time, keys and values of the previous positions read
  from buffers of fixed length `max_len` written at `t`, so `models.decoding.greedy` /
  `beam_search` run it under one `jax.jit` compilation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import bert
from models._vision_layers import gelu


def _heads(attn: bert.BertAttention, t: jax.Array) -> jax.Array:
  b, n, d = t.shape
  return t.reshape(b, n, attn.heads, d // attn.heads)


def _attend(attn: bert.BertAttention, x, keys, values, mask):
  """`attn`'s projections and output block with precomputed `keys`/`values` [B, Lk, H, Dh] and a
  `mask` [B, Lq, Lk] (True = may attend)."""
  b, n, d = x.shape
  q = _heads(attn, attn.self.query(x))
  out = jax.nn.dot_product_attention(q, keys, values, mask=mask[:, None])
  return attn.output(out.reshape(b, n, d), x)


def _feed_forward(layer: bert.BertLayer, x):
  return layer.output(gelu(layer.intermediate.dense(x)), x)


class PredictionHead(nnx.Module):
  """BERT's `cls.predictions`: dense -> GELU -> LayerNorm -> vocabulary logits."""

  def __init__(self, dim, vocab, rngs, dtype):
    self.dense = nnx.Linear(dim, dim, dtype=dtype, rngs=rngs)
    self.LayerNorm = nnx.LayerNorm(dim, epsilon=1e-12, dtype=dtype, rngs=rngs)
    self.decoder = nnx.Linear(dim, vocab, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.decoder(self.LayerNorm(gelu(self.dense(x))))


class AnswerDecoder(nnx.Module):
  """Causal BERT decoder over `memory` tokens (see the module docstring)."""

  def __init__(self, *, vocab_size: int, hidden_size: int = 768, num_layers: int = 12,
               num_heads: int = 12, intermediate_size: int | None = None,
               max_position: int = 512, memory_width: int = 768, dtype=jnp.float32,
               rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.embeddings = bert.Embeddings(vocab_size, hidden_size, max_position, rngs, dtype)
    mlp = intermediate_size or 4 * hidden_size
    self.layers = nnx.List([
        bert.BertLayer(hidden_size, num_heads, mlp, cross_width=memory_width, rngs=rngs,
                       dtype=dtype) for _ in range(num_layers)])
    self.head = PredictionHead(hidden_size, vocab_size, rngs, dtype)

  def __call__(self, ids, mask, memory, memory_mask):
    x = self.embeddings(ids)
    n = ids.shape[1]
    self_mask = jnp.tril(jnp.ones((n, n), bool))[None] & mask[:, None, :].astype(bool)
    for layer in self.layers:
      keys = _heads(layer.attention, layer.attention.self.key(x))
      values = _heads(layer.attention, layer.attention.self.value(x))
      x = _attend(layer.attention, x, keys, values, self_mask)
      x = layer.crossattention(x, memory, memory_mask)
      x = _feed_forward(layer, x)
    return self.head(x)

  def init_cache(self, memory, memory_mask, max_len: int) -> dict:
    """Empty key/value buffers `[B, max_len, H, Dh]` per layer, and the memory the steps read."""
    b = memory.shape[0]
    attn = self.layers[0].attention
    d = attn.self.query.out_features
    shape = (b, max_len, attn.heads, d // attn.heads)
    zeros = jnp.zeros(shape, attn.self.query.kernel[...].dtype)
    return {"keys": [zeros] * len(self.layers), "values": [zeros] * len(self.layers),
            "memory": memory, "memory_mask": memory_mask}

  def step(self, tokens, t, cache):
    """Feeds `tokens [B]` at position `t`; returns next-token logits [B, V] and the cache."""
    emb = self.embeddings
    x = emb.LayerNorm(emb.word_embeddings(tokens[:, None])
                      + emb.position_embeddings(jnp.full((1, 1), t))
                      + emb.token_type_embeddings(jnp.zeros_like(tokens)[:, None]))
    max_len = cache["keys"][0].shape[1]
    visible = (jnp.arange(max_len) <= t)[None, None, :]
    keys, values = [], []
    for i, layer in enumerate(self.layers):
      k = jax.lax.dynamic_update_slice_in_dim(
          cache["keys"][i], _heads(layer.attention, layer.attention.self.key(x)), t, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(
          cache["values"][i], _heads(layer.attention, layer.attention.self.value(x)), t, axis=1)
      keys.append(k)
      values.append(v)
      x = _attend(layer.attention, x, k, v, jnp.broadcast_to(visible, (x.shape[0], 1, max_len)))
      x = layer.crossattention(x, cache["memory"], cache["memory_mask"])
      x = _feed_forward(layer, x)
    return self.head(x)[:, 0], {**cache, "keys": keys, "values": values}


@models.register("answer_decoder")
def answer_decoder(*, rngs: nnx.Rngs, **kw):
  """BERT-base-shaped answer decoder (768 wide, 12 layers); `vocab_size` is required."""
  return AnswerDecoder(rngs=rngs, **kw)

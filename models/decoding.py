"""Autoregressive decoding under `jax.jit`: greedy search and beam search over a fixed-size cache.

Both take a *step function* ``step(tokens [N], position, cache) -> (logits [N, V], cache)``
that feeds one token per sequence at ``position`` (0-based) and returns the next-token logits;
``cache`` is any pytree whose leaves have the sequences on axis 0 (a decoder's key/value buffers
of fixed length, written at ``position``; `models.answer_decoder.AnswerDecoder.step`). Shapes never change during the search, so one compilation serves every
call: the loop is a `jax.lax.fori_loop` over ``max_len`` positions.

Conventions (those of BERT-style answer generators such as ALPRO's / BLIP's decoders and of
Wu et al. 2016, "Google's Neural Machine Translation System", Sec. 7 for the length penalty):
* the search starts from ``bos`` and returns ``max_len`` generated tokens (``bos`` not included);
* after ``eos`` a sequence is finished: it emits ``pad`` from then on and its score stops changing;
* a beam's score is its summed log-probability; hypotheses are ranked at the end by
  ``score / length ** length_penalty`` (length = generated tokens up to and including ``eos``;
  ``length_penalty = 0`` ranks by the plain sum).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Step = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def greedy(step: Step, cache: Any, bos: jax.Array, max_len: int, *, eos: int, pad: int = 0
           ) -> tuple[jax.Array, jax.Array]:
  """(tokens [B, max_len], log-probability [B]) of the arg-max continuation of ``bos [B]``."""
  batch = bos.shape[0]

  def body(t, carry):
    last, cache, tokens, logp, done = carry
    logits, cache = step(last, t, cache)
    logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nxt = jnp.argmax(logprobs, axis=-1).astype(tokens.dtype)
    logp = logp + jnp.where(done, 0.0, jnp.take_along_axis(logprobs, nxt[:, None], 1)[:, 0])
    nxt = jnp.where(done, pad, nxt)
    tokens = tokens.at[:, t].set(nxt)
    return nxt, cache, tokens, logp, done | (nxt == eos)

  init = (bos.astype(jnp.int32), cache, jnp.full((batch, max_len), pad, jnp.int32),
          jnp.zeros((batch,), jnp.float32), jnp.zeros((batch,), bool))
  _, _, tokens, logp, _ = jax.lax.fori_loop(0, max_len, body, init)
  return tokens, logp


def expand_for_beams(cache: Any, beams: int) -> Any:
  """Repeats every cache leaf ``beams`` times along axis 0: ``[B, ...] -> [B * beams, ...]``."""
  return jax.tree_util.tree_map(lambda x: jnp.repeat(x, beams, axis=0), cache)


def beam_search(step: Step, cache: Any, bos: jax.Array, max_len: int, *, beams: int, eos: int,
                pad: int = 0, length_penalty: float = 0.0
                ) -> tuple[jax.Array, jax.Array]:
  """(tokens [B, beams, max_len], ranking score [B, beams]), best first, for each of ``bos [B]``.

  ``cache`` has the batch on axis 0 (one entry per sequence, as for `greedy`); it is repeated for
  the beams here. At each position every live beam is extended by every token; the ``beams`` best
  (beam, token) pairs by summed log-probability survive, finished beams carrying their score
  unchanged as a single ``pad`` continuation, and the cache rows follow their beams.
  Deterministic: ties go to the lower flat index (beam-major), as `jax.lax.top_k` orders them.
  """
  batch = bos.shape[0]
  cache = expand_for_beams(cache, beams)
  neg_inf = jnp.float32(-1e30)
  # Only beam 0 is live at the start, so the first expansion does not yield `beams` copies.
  scores = jnp.tile(jnp.where(jnp.arange(beams) == 0, 0.0, neg_inf)[None], (batch, 1))

  def body(t, carry):
    last, cache, tokens, scores, done, length = carry
    logits, cache = step(last.reshape(-1), t, cache)
    vocab = logits.shape[-1]
    logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, beams, vocab)
    # A finished beam continues only with `pad`, at no cost.
    finished_row = jnp.where(jnp.arange(vocab) == pad, 0.0, neg_inf)
    logprobs = jnp.where(done[..., None], finished_row, logprobs)
    candidates = (scores[..., None] + logprobs).reshape(batch, beams * vocab)
    scores, flat = jax.lax.top_k(candidates, beams)
    parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)

    def follow(x):  # rows of `x` [B * beams, ...] reordered to follow their parent beam
      x = x.reshape((batch, beams) + x.shape[1:])
      idx = parent.reshape((batch, beams) + (1,) * (x.ndim - 2))
      return jnp.take_along_axis(x, idx, axis=1).reshape((batch * beams,) + x.shape[2:])

    cache = jax.tree_util.tree_map(follow, cache)
    tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1).at[:, :, t].set(token)
    was_done = jnp.take_along_axis(done, parent, axis=1)
    length = jnp.take_along_axis(length, parent, axis=1) + (~was_done).astype(jnp.int32)
    return token, cache, tokens, scores, was_done | (token == eos), length

  init = (jnp.tile(bos.astype(jnp.int32)[:, None], (1, beams)), cache,
          jnp.full((batch, beams, max_len), pad, jnp.int32), scores,
          jnp.zeros((batch, beams), bool), jnp.zeros((batch, beams), jnp.int32))
  _, _, tokens, scores, _, length = jax.lax.fori_loop(0, max_len, body, init)
  ranked = scores / jnp.maximum(length, 1).astype(jnp.float32) ** length_penalty
  order = jnp.argsort(-ranked, axis=1, stable=True)
  return (jnp.take_along_axis(tokens, order[..., None], axis=1),
          jnp.take_along_axis(ranked, order, axis=1))

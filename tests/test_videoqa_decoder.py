"""The answer decoder's cached step equals its teacher-forced forward, position by position, and
cached greedy / beam decoding equals decoding that re-runs the whole prefix every step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from models import decoding

VOCAB, LENGTH, BOS, EOS, PAD = 11, 6, 1, 2, 0


def _model():
  return models.build("answer_decoder", seed=0, vocab_size=VOCAB, hidden_size=32, num_layers=2,
                      num_heads=4, max_position=16, memory_width=24)


def _memory(b):
  rng = np.random.default_rng(0)
  memory = jnp.asarray(rng.normal(size=(b, 5, 24)), jnp.float32)
  memory_mask = jnp.asarray(np.arange(5)[None] < np.array([5, 3, 4])[:b, None])
  return memory, memory_mask


def test_cached_steps_equal_the_teacher_forced_forward():
  model = _model()
  memory, memory_mask = _memory(3)
  ids = jnp.asarray(np.random.default_rng(1).integers(3, VOCAB, size=(3, LENGTH)), jnp.int32)
  full = model(ids, jnp.ones_like(ids, bool), memory, memory_mask)
  cache = model.init_cache(memory, memory_mask, LENGTH)
  for t in range(LENGTH):
    logits, cache = model.step(ids[:, t], t, cache)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full[:, t]), atol=2e-5, rtol=1e-5)


def _uncached_step(model):
  """A step function with no key/value cache: re-runs the teacher-forced forward on the whole
  prefix, which it carries (with the memory) as its "cache"."""
  def step(tokens, t, carry):
    prefix, memory, memory_mask = carry
    prefix = jax.lax.dynamic_update_slice_in_dim(prefix, tokens[:, None], t, axis=1)
    mask = jnp.arange(LENGTH)[None] <= t
    logits = model(prefix, jnp.broadcast_to(mask, prefix.shape), memory, memory_mask)
    return jnp.take(logits, t, axis=1), (prefix, memory, memory_mask)
  return step


def test_cached_decoding_equals_uncached_decoding():
  model = _model()
  graphdef, state = nnx.split(model)
  memory, memory_mask = _memory(3)
  bos = jnp.full((3,), BOS, jnp.int32)

  @jax.jit
  def both(state):
    m = nnx.merge(graphdef, state)
    cached = decoding.greedy(m.step, m.init_cache(memory, memory_mask, LENGTH), bos, LENGTH,
                             eos=EOS, pad=PAD)
    start = (jnp.zeros((3, LENGTH), jnp.int32), memory, memory_mask)
    plain = decoding.greedy(_uncached_step(m), start, bos, LENGTH, eos=EOS, pad=PAD)
    return cached, plain

  (tokens, logp), (tokens_plain, logp_plain) = both(state)
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(tokens_plain))
  np.testing.assert_allclose(np.asarray(logp), np.asarray(logp_plain), rtol=1e-5)

  @jax.jit
  def beams(state):
    m = nnx.merge(graphdef, state)
    cached = decoding.beam_search(m.step, m.init_cache(memory, memory_mask, LENGTH), bos, LENGTH,
                                  beams=3, eos=EOS, pad=PAD)
    start = (jnp.zeros((3, LENGTH), jnp.int32), memory, memory_mask)
    plain = decoding.beam_search(_uncached_step(m), start, bos, LENGTH, beams=3, eos=EOS, pad=PAD)
    return cached, plain

  (b_tokens, b_scores), (p_tokens, p_scores) = beams(state)
  np.testing.assert_array_equal(np.asarray(b_tokens), np.asarray(p_tokens))
  np.testing.assert_allclose(np.asarray(b_scores), np.asarray(p_scores), rtol=1e-5)
  again = beams(state)[0][0]
  np.testing.assert_array_equal(np.asarray(again), np.asarray(b_tokens))

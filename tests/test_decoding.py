"""Greedy and beam search (models/decoding.py) against brute-force enumeration on a toy decoder.

The toy decoder has a history-dependent cache (the running sum of the tokens fed so far, mod M),
so a beam search that forgot to reorder the cache with its beams would score wrong continuations.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from models import decoding

PAD, EOS, VOCAB, MODULUS, LENGTH = 0, 1, 4, 5, 3


def _table(seed):
  table = np.random.default_rng(seed).normal(size=(LENGTH, MODULUS, VOCAB)) * 2.0
  table[..., PAD] = -1e9  # a live sequence never emits padding
  return table


def _step(table):
  table = jnp.asarray(table, jnp.float32)

  def step(tokens, t, cache):
    cache = (cache + tokens) % MODULUS
    return table[t, cache], cache
  return step


def _log_softmax(x):
  x = x - x.max()
  return x - np.log(np.exp(x).sum())


def _hypotheses(prefix=()):
  """Every token sequence a search can end with: LENGTH live tokens, or a prefix ending in EOS."""
  if len(prefix) == LENGTH or (prefix and prefix[-1] == EOS):
    yield prefix + (PAD,) * (LENGTH - len(prefix))
    return
  for tok in range(1, VOCAB):
    yield from _hypotheses(prefix + (tok,))


def _score(table, bos, seq):
  """(summed log-probability, length) of `seq` after `bos`, by walking the toy decoder."""
  state, logp, n = bos % MODULUS, 0.0, 0
  for t, tok in enumerate(seq):
    if tok == PAD:
      break
    logp += _log_softmax(table[t, state])[tok]
    state, n = (state + tok) % MODULUS, n + 1
  return logp, n


def _brute_force(table, bos):
  """Every hypothesis (tokens, summed log-probability), best first."""
  hyps = [(seq, _score(table, bos, seq)[0]) for seq in _hypotheses()]
  return sorted(hyps, key=lambda h: -h[1])


def test_wide_beam_search_equals_brute_force_and_greedy_equals_one_beam():
  bos = np.array([2, 3, 4], np.int32)
  for seed in range(2):
    table = _table(seed)
    step = _step(table)
    cache = jnp.zeros((3,), jnp.int32)
    beams = (VOCAB - 1) ** (LENGTH - 1)  # wide enough to keep every hypothesis until the end
    search = jax.jit(lambda b, c: decoding.beam_search(step, c, b, LENGTH, beams=beams, eos=EOS,
                                                       pad=PAD))
    tokens, scores = search(jnp.asarray(bos), cache)
    for i, b in enumerate(bos):
      expected = _brute_force(table, int(b))[:beams]
      np.testing.assert_array_equal(np.asarray(tokens[i]), np.array([h[0] for h in expected]))
      np.testing.assert_allclose(np.asarray(scores[i]), [h[1] for h in expected], rtol=1e-5)

    g_tokens, g_logp = jax.jit(lambda b, c: decoding.greedy(step, c, b, LENGTH, eos=EOS, pad=PAD))(
        jnp.asarray(bos), cache)
    one_tokens, one_scores = decoding.beam_search(step, cache, jnp.asarray(bos), LENGTH, beams=1,
                                                  eos=EOS, pad=PAD)
    np.testing.assert_array_equal(np.asarray(g_tokens), np.asarray(one_tokens[:, 0]))
    np.testing.assert_allclose(np.asarray(g_logp), np.asarray(one_scores[:, 0]), rtol=1e-6)


def test_length_penalty_ranks_by_normalised_score_and_is_deterministic():
  table = _table(3)
  step = _step(table)
  bos = jnp.array([1, 2], jnp.int32)
  cache = jnp.zeros((2,), jnp.int32)
  run = jax.jit(lambda: decoding.beam_search(step, cache, bos, LENGTH, beams=4, eos=EOS, pad=PAD,
                                             length_penalty=1.0))
  tokens, ranked = run()
  tokens2, ranked2 = run()
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(tokens2))
  for i in range(2):
    by_hand = [logp / n for logp, n in (_score(table, int(bos[i]), tuple(seq))
                                        for seq in np.asarray(tokens[i]))]
    np.testing.assert_allclose(np.asarray(ranked[i]), by_hand, rtol=1e-5)
    assert np.all(np.diff(np.asarray(ranked[i])) <= 1e-6)

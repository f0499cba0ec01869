"""Losses of the video-QA methods (arrays in, arrays out).

MCG (Yu et al., arXiv 2410.09379) aligns video and question at two granularities and generates the
answer. No official code is public and the paper's text could not be read here; the forms below are
our reading [inferred], each the standard loss of the baseline the abstract names:
- instance level (ICL): ALPRO's video-text contrastive loss on the projected, normalised video and
  question [CLS] features, `symmetric_cross_entropy(v q^T / tau)` (`losses.video`; salesforce/ALPRO
  `AlproForPretrain.forward`, VTC);
- token level (TCL), `late_interaction(v [B, N, D], q [B, L, D], masks)`: FILIP's token-wise
  similarity (Yao et al., ICLR 2022, Eq. 4-5) between every video a and question b,
  `S_ab = 1/2 [mean_i max_j <v_ai, q_bj> + mean_j max_i <q_bj, v_ai>]` over normalised real
  tokens, used in the same symmetric cross-entropy;
- generation: `answer_cross_entropy(logits [B, L, V], targets [B, L], mask [B, L], smoothing)`,
  the teacher-forced token cross-entropy with label smoothing (Szegedy et al. 2016, Sec. 7: targets
  `(1 - eps) onehot + eps / V`), averaged over the real answer tokens.

HeurVidQA (Yu et al., arXiv 2410.09380) scores a video against entity and action prompts with a
frozen video-language model, as ALPRO's entity prompter does (salesforce/ALPRO
`src/modeling/alpro_models.py`, class `Prompter`):
- `template_average(features [T * E, D], templates)`: prompt features ordered template-major (every
  entity for template 0, then template 1, ...), averaged over the templates per entity, *not*
  re-normalised (`build_text_prompts`: `chunk` -> `stack(dim=1)` -> `mean`);
- `prompter_soft_labels(video [B, D], prompts [E, D], temp, ignore_below)`:
  `softmax_e(v . p_e / temp)` and an ignore mask for videos whose best entity has probability below
  `ignore_below` (0.2). ALPRO's `_compute_soft_labels` compares the *index* of the best entity with
  0.2 (`max(...)[1] < 0.2`, i.e. it ignores every video whose best entity is entity 0); we compare
  the probability, as its comment says it means.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from losses.video import l2_normalise


def late_interaction(video, question, video_mask, question_mask):
  """`S [B_v, B_q]`: FILIP token-wise similarity (module docstring); masks mark real tokens."""
  v, q = l2_normalise(video.astype(jnp.float32)), l2_normalise(question.astype(jnp.float32))
  sim = jnp.einsum("aid,bjd->abij", v, q)
  vm, qm = video_mask[:, None, :, None], question_mask[None, :, None, :]
  neg = jnp.finfo(jnp.float32).min
  v2q = jnp.max(jnp.where(qm, sim, neg), axis=3)  # [a, b, i]: best question token per video token
  q2v = jnp.max(jnp.where(vm, sim, neg), axis=2)  # [a, b, j]: best video token per question token

  def masked_mean(x, m):
    return jnp.sum(jnp.where(m, x, 0.0), axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)
  return 0.5 * (masked_mean(v2q, video_mask[:, None, :]) + masked_mean(q2v, question_mask[None]))


def answer_cross_entropy(logits, targets, mask, smoothing: float = 0.1):
  """Mean over real answer tokens of the label-smoothed cross-entropy."""
  onehot = optax.smooth_labels(jax.nn.one_hot(targets, logits.shape[-1]), smoothing)
  per_token = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_token * mask) / jnp.maximum(jnp.sum(mask), 1.0)



def template_average(features, templates: int):
  """`[E, D]`: mean over `templates` of template-major prompt features `[templates * E, D]`."""
  return jnp.mean(features.reshape(templates, -1, features.shape[-1]), axis=0)


def prompter_soft_labels(video, prompts, temp, ignore_below: float = 0.2):
  """(soft labels [B, E], ignore [B] bool): module docstring."""
  soft = jax.nn.softmax(video.astype(jnp.float32) @ prompts.astype(jnp.float32).T / temp, axis=-1)
  return soft, jnp.max(soft, axis=-1) < ignore_below

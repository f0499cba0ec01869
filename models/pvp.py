"""PVP: pseudo-visual prompts and a dual adapter on a frozen CLIP ModifiedResNet, trained on text
only, zero-shot multi-label recognition on images (TAI++ / PVP, Xu et al., IJCAI 2024, arXiv
2405.06926; code Jinx630/Pseudo-Visual-Prompt, `trainers/Caption_distill_double.py` of
`pvp_pretrain` (stage 1) and `pvp_finetune` (stage 2); built on TaI-DPT, Guo et al., CVPR 2023).

Trainable pieces around `clip` (a `models.clip.CLIP` with a ModifiedResNet image tower):
- `image_prompts` P and `image_prompts_local` Q: one image per class each ([C, S, S, 3], raw tensor
  space, initialised N(CLIP mean_ch, CLIP std_ch)); their features go through the whole image tower
  with the positional-embedding attention pool.
- `ctx`, `ctx_double`: CoOp context vectors (16 x width, N(0, 0.02)) in place of the "X" tokens of
  "X X ... X {class}." (global and local text prompts, TaI-DPT's double prompt).
- `text_adapter`, `image_adapter`: `A(x) = alpha x + (1 - alpha) W2 dropout(relu(W1 x))` (alpha 0.6,
  dropout 0.6, no biases; the code's `Adaptor_Learner(multi=1, alpha=0.6)`).

Branches and their logits (scale 4 = the code's fixed `logit_scale`; local logits in
`losses.pvp.local_logits` with spatial temperature T):
- sentence features: the text tower's states times `text_projection`; global = end-of-text state,
  local = every token (padding masked). Training adds noise: normalise(normalise(t) + 0.04 N).
- `pretrain_logits(tokens, rng)` (stage 1): image-prompt branch only, `(z_ig, z_il)` (T = 40).
- `finetune_logits(tokens, rng)` (stage 2): `(z_tg, z_tl, z_ig, z_il, G)`: text-prompt branch
  (T = 50), image-prompt branch (T = 40), adapters on the prompt features and on the sentences'
  global feature (not on token features), `G = clip.logit_scale * Tg Pg^T` (the raw parameter,
  ln 100 for OpenAI's weights, as the code uses it).
- `text_only_logits(tokens, rng)`: the text-prompt branch without adapters (TaI-DPT, the baseline).
- `scores(images, stage)`: zero-shot test. Image global = attention pool *without* positional
  embedding, locals = DenseCLIP's `c_proj(v_proj(F_hw))` plus the global appended; stage 2 passes
  the global (not the locals) through `image_adapter`; test temperatures swap (text 40, image 50)
  as the code does. The score is the sum of the branches' logits (four in stage 2).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from losses.pvp import l2_normalise, local_logits, noisy
from models._vision_layers import linear
from models.clip import MEAN, STD, ModifiedResNet
from models.clip_tokenizer import tokenize

STAGES = ("pretrain", "finetune", "text_only")


class Adapter(nnx.Module):
  """alpha x + (1 - alpha) fc2(dropout(relu(fc1(x)))), bias-free (PVP's `Adaptor_Learner`)."""

  def __init__(self, dim: int, *, alpha: float, dropout: float, rngs: nnx.Rngs):
    self.alpha = alpha
    self.fc1 = linear(dim, dim, use_bias=False, rngs=rngs)
    self.fc2 = linear(dim, dim, use_bias=False, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x):
    return self.alpha * x + (1 - self.alpha) * self.fc2(self.dropout(jax.nn.relu(self.fc1(x))))


@functools.lru_cache(maxsize=8)
def prompt_tokens(class_names: tuple[str, ...], n_ctx: int, context_length: int) -> np.ndarray:
  """Tokens of "X X ... X {class}." per class (the X positions are replaced by the context)."""
  prefix = " ".join(["X"] * n_ctx)
  return tokenize([f"{prefix} {name.replace('_', ' ')}." for name in class_names], context_length)


class PVP(nnx.Module):
  def __init__(self, *, class_names, clip="clip_rn50", prompt_size: int = 224, n_ctx: int = 16,
               adapter_alpha: float = 0.6, adapter_dropout: float = 0.6, scale: float = 4.0,
               temperature_text: float = 50.0, temperature_image: float = 40.0,
               noise: float = 0.04, rngs: nnx.Rngs):
    self.clip = models.build(clip, rngs=rngs)
    if not isinstance(self.clip.visual, ModifiedResNet):
      raise ValueError(f"PVP needs a CLIP with a ModifiedResNet image tower (clip_rn50, "
                       f"clip_tiny_rn), not {clip!r}.")
    self.class_names = tuple(class_names)
    self.n_ctx, self.scale, self.noise = n_ctx, scale, noise
    self.temperature_text, self.temperature_image = temperature_text, temperature_image
    c = len(self.class_names)
    key = rngs.params()
    mean, std = jnp.asarray(MEAN), jnp.asarray(STD)
    shape = (c, prompt_size, prompt_size, 3)
    self.image_prompts = nnx.Param(mean + std * jax.random.normal(key, shape))
    self.image_prompts_local = nnx.Param(mean + std * jax.random.normal(rngs.params(), shape))
    width = self.clip.text.token_embedding.features
    self.ctx = nnx.Param(0.02 * jax.random.normal(rngs.params(), (n_ctx, width)))
    self.ctx_double = nnx.Param(0.02 * jax.random.normal(rngs.params(), (n_ctx, width)))
    dim = self.clip.text.text_projection.shape[1]
    self.text_adapter = Adapter(dim, alpha=adapter_alpha, dropout=adapter_dropout, rngs=rngs)
    self.image_adapter = Adapter(dim, alpha=adapter_alpha, dropout=adapter_dropout, rngs=rngs)

  # --- features -----------------------------------------------------------------------------------
  def text_prompt_features(self):
    """(global, local) text-prompt features [C, D] (unnormalised)."""
    text = self.clip.text
    tokens = jnp.asarray(prompt_tokens(self.class_names, self.n_ctx, text.context_length))
    emb = text.token_embedding(tokens)
    out = []
    for ctx in (self.ctx, self.ctx_double):
      e = emb.at[:, 1:1 + self.n_ctx].set(jnp.broadcast_to(ctx[...], (len(tokens),) + ctx.shape))
      out.append(text.pool(text.hidden_from_embeddings(e), tokens))
    return tuple(out)

  def image_prompt_features(self):
    """(global, local) image-prompt features [C, D]: the prompts through the image tower."""
    return (self.clip.visual(self.image_prompts[...]),
            self.clip.visual(self.image_prompts_local[...]))

  def sentence_features(self, tokens):
    """(global [B, D], tokens [B, L, D]) projected text-tower states of the training sentences."""
    states = self.clip.text.project(self.clip.text.hidden_states(tokens))
    eot = jnp.argmax(tokens, axis=-1)
    return jnp.take_along_axis(states, eot[:, None, None], axis=1)[:, 0], states

  def image_features(self, images):
    """(global [B, D], local [B, HW + 1, D]) of test images: attention pool without positional
    embedding; DenseCLIP locals with the global appended."""
    pool = self.clip.visual.attnpool
    f = self.clip.visual.features(images)
    glob = pool(f, use_pos=False)[0]
    local = pool.dense(f).reshape(f.shape[0], -1, glob.shape[-1])
    return glob, jnp.concatenate([local, glob[:, None]], axis=1)

  # --- logits -------------------------------------------------------------------------------------
  def _sentences(self, tokens, rng, adapter=None):
    glob, local = self.sentence_features(tokens)
    glob = l2_normalise(glob)
    if adapter is not None:
      glob = adapter(glob)
    kg, kl = jax.random.split(rng)
    return noisy(glob, kg, self.noise), noisy(local, kl, self.noise), tokens != 0

  def pretrain_logits(self, tokens, rng):
    """Stage 1, training sentences -> (z_ig, z_il) [B, C]."""
    tg, tl, mask = self._sentences(tokens, rng)
    pg, pl = (l2_normalise(x) for x in self.image_prompt_features())
    return (self.scale * tg @ pg.T,
            local_logits(tl, pl, self.temperature_image, self.scale, mask))

  def text_only_logits(self, tokens, rng):
    """TaI-DPT (text prompts only, no adapters) -> (z_tg, z_tl) [B, C]."""
    tg, tl, mask = self._sentences(tokens, rng)
    qg, ql = (l2_normalise(x) for x in self.text_prompt_features())
    return self.scale * tg @ qg.T, local_logits(tl, ql, self.temperature_text, self.scale, mask)

  def _adapted_prompts(self):
    qg, ql = (l2_normalise(self.text_adapter(l2_normalise(x)))
              for x in self.text_prompt_features())
    pg, pl = (l2_normalise(self.image_adapter(l2_normalise(x)))
              for x in self.image_prompt_features())
    return qg, ql, pg, pl

  def finetune_logits(self, tokens, rng):
    """Stage 2, training sentences -> (z_tg, z_tl, z_ig, z_il [B, C], G [C, C])."""
    tg, tl, mask = self._sentences(tokens, rng, self.text_adapter)
    qg, ql, pg, pl = self._adapted_prompts()
    return (self.scale * tg @ qg.T, local_logits(tl, ql, self.temperature_text, self.scale, mask),
            self.scale * tg @ pg.T, local_logits(tl, pl, self.temperature_image, self.scale, mask),
            self.clip.logit_scale[...] * qg @ pg.T)

  def branch_scores(self, images, stage: str):
    """Zero-shot test logits per branch [B, C]: stage 1 (z_ig, z_il); stage 2 (z_tg, z_tl, z_ig,
    z_il); text_only (z_tg, z_tl)."""
    glob, local = self.image_features(images)
    local = l2_normalise(local)
    t_text, t_image = self.temperature_image, self.temperature_text  # swapped at test (code)
    if stage == "pretrain":
      pg, pl = (l2_normalise(x) for x in self.image_prompt_features())
      g = l2_normalise(glob)
      return self.scale * g @ pg.T, local_logits(local, pl, t_image, self.scale)
    if stage == "text_only":
      qg, ql = (l2_normalise(x) for x in self.text_prompt_features())
      g = l2_normalise(glob)
      return self.scale * g @ qg.T, local_logits(local, ql, t_text, self.scale)
    qg, ql, pg, pl = self._adapted_prompts()
    g = l2_normalise(self.image_adapter(l2_normalise(glob)))
    return (self.scale * g @ qg.T, local_logits(local, ql, t_text, self.scale),
            self.scale * g @ pg.T, local_logits(local, pl, t_image, self.scale))

  def scores(self, images, stage: str):
    """The summed branch logits [B, C] (the code's evaluator adds them)."""
    return sum(self.branch_scores(images, stage))


@models.register("pvp")
def pvp(*, rngs: nnx.Rngs, **kw) -> PVP:
  """PVP around a CLIP ModifiedResNet (`clip`: a registered name or a config block)."""
  return PVP(**kw, rngs=rngs)

"""HeurVidQA: video QA guided by entity and action heuristics from a frozen video-language model
(Yu et al., "Prompting Video-Language Foundation Models with Domain-specific Fine-grained
Heuristics for Video Question Answering", arXiv 2410.09380).

From the paper's abstract: a pretrained video-language model serves as an implicit knowledge
engine; domain-specific *entity* and *action* prompters score the video against entity and action
prompts, and these fine-grained heuristics steer the QA model toward the right entities and
actions. No code is public and the paper's body could not be read here, so how the heuristics
enter the QA model is our design [inferred], with both readings switchable
(`task.heuristics.inject`, ml_pipelines/tasks/heurvidqa.py):

* Prompts (ALPRO's `Prompter`, salesforce/ALPRO `src/modeling/alpro_models.py`): every entity /
  action word is written into each template ("A video of a {}."), encoded by the prompter's text
  tower (unit features), and averaged over the templates (`losses.videoqa.template_average`, not
  re-normalised, as ALPRO).
* Heuristics: `h^k = softmax_e(s(v, P^k_e))` for k in (entity, action), `s` the prompter's own
  scaled video-text similarity (ALPRO's `v . P_e / temp`; for a `tmvm` prompter
  `exp(logit_scale) max_j <p_j(v), P_e>`); for the input injection the top-k entries are kept and
  renormalised [inferred, k = 5].
* (a) input [inferred]: the top-k prompts of each kind become k extra tokens of the question
  `x_i = W^k (h~_i P^k_{e_i}) + b^k` (a Linear from the prompter width to the QA width, its bias
  telling the kinds apart), appended to the question's hidden states before the fusion layers
  (with ALPRO's concatenation fusion, `models/videoqa.py`: [question; heuristic tokens; video
  tokens]), so the fused [CLS] the answer head reads attends to them.
* (b) loss [inferred]: the QA model predicts the heuristics from its fused [CLS] token,
  `logits^k_e = <l2norm(U^k cls), P^k_e> / tau` with the prompter's frozen temperature, and is
  trained towards the prompter's `h^k` (losses/heurvidqa.py). With both, that [CLS] has also read
  the heuristic tokens, so the loss then mostly teaches the fusion layers to read them.

The prompter (`prompter` block) is a second set of towers next to the QA model's: `alpro_prompter`
(below: ALPRO's `Prompter`, a video tower such as TimeSformer and a BERT text tower with 256-d
projections and a learnable temperature, trained for text-video retrieval by the `video_retrieval`
task) or any `tmvm` configuration (frame towers, e.g. CLIP); it is frozen through the trainer's
partition (`optimizer.freeze=r"^prompter/"`) and its weights come from its own run (or a CLIP file)
through `init_from` with the `prompter_ours` (`prompter_open_clip`) converter (below). Everything
else is ALPRO's QA classifier (models/videoqa.py), under the same names.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from losses import video as vl
from losses import videoqa as qal
from models import convert
from models._vision_layers import linear
from models.tmvm import normalise_frames
from models.videoqa import TEMP_RANGE, QAHead, VideoQAEncoder

KINDS = ("entity", "action")


def prompt_features(prompter, ids, mask):
  """[E, D]: template-averaged unit text features of the prompts `ids [T, E, L]` (template t of
  entity e at [t, e])."""
  t, e, length = ids.shape
  feats = prompter.encode_text(ids.reshape(t * e, length), mask.reshape(t * e, length))
  return qal.template_average(feats, t)


def prompter_logits(prompter, video, frame_mask, prompts):
  """[B, E]: the prompter's scaled similarity between each clip and each prompt feature."""
  protos = prompter.prototypes(video, frame_mask)[0]
  return vl.prototype_similarity(prompts, protos, prompter.scale()).T


def top_k_renormalise(h, k: int):
  """(weights [B, k], indices [B, k]): the k largest entries of each row of `h`, summing to 1."""
  weights, index = jax.lax.top_k(h, k)
  return weights / jnp.sum(weights, axis=-1, keepdims=True), index


def heuristic_tokens(weights, index, prompts, proj):
  """[B, k, D_qa]: `proj(w_i P_{e_i})` for the top-k prompts of each clip."""
  return proj(weights[..., None] * prompts[index])


class HeurVidQA(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, num_answers: int, prompter: dict,
               rngs: nnx.Rngs):
    self.encoder = VideoQAEncoder(vision=vision, text=text, rngs=rngs)
    self.head = QAHead(self.encoder.width, num_answers, rngs=rngs)
    self.prompter = models.build(dict(prompter), rngs=rngs)
    width, pwidth = self.encoder.width, self._prompter_width()
    self.entity_proj = linear(pwidth, width, rngs=rngs)
    self.action_proj = linear(pwidth, width, rngs=rngs)
    self.entity_query = linear(width, pwidth, rngs=rngs)
    self.action_query = linear(width, pwidth, rngs=rngs)

  def _prompter_width(self) -> int:
    proj = self.prompter.text_proj
    return proj.out_features if proj is not None else self.prompter.text.num_features

  def heuristics(self, video, frame_mask, prompts):
    """{kind: (prompt features [E, D], h [B, E])} from the frozen prompter (gradient stopped).

    prompts: {kind: {"ids": [T, E, L], "mask": [T, E, L]}}, the kinds a subset of KINDS."""
    out = {}
    for kind, p in prompts.items():
      feats = jax.lax.stop_gradient(prompt_features(self.prompter, p["ids"], p["mask"]))
      logits = prompter_logits(self.prompter, video, frame_mask, feats)
      out[kind] = (feats, jax.nn.softmax(jax.lax.stop_gradient(logits), axis=-1))
    return out

  def __call__(self, video, frame_mask, question, question_mask, prompts, *, inject_input: bool,
               top_k: int):
    """Dict: answer `logits` [B, num_answers], and per kind the prompter's heuristics `h_<kind>`
    [B, E] and the QA model's predicted heuristic logits `predicted_<kind>` [B, E]."""
    v, vmask = self.encoder.video_tokens(video, frame_mask)
    q, qmask = self.encoder.text(question, question_mask), question_mask
    heur = self.heuristics(video, frame_mask, prompts)
    if inject_input:
      for kind, (feats, h) in heur.items():
        weights, index = top_k_renormalise(h, min(top_k, h.shape[-1]))
        tokens = heuristic_tokens(weights, index, feats, getattr(self, f"{kind}_proj"))
        q = jnp.concatenate([q, tokens.astype(q.dtype)], axis=1)
        qmask = jnp.concatenate([qmask, jnp.ones(tokens.shape[:2], bool)], axis=1)
    cls = self.encoder.text.fuse(q, qmask, v, vmask)[:, 0]
    out = {"logits": self.head(cls)}
    scale = jax.lax.stop_gradient(self.prompter.scale())
    for kind, (feats, h) in heur.items():
      query = vl.l2_normalise(getattr(self, f"{kind}_query")(cls).astype(jnp.float32))
      out[f"h_{kind}"] = h
      out[f"predicted_{kind}"] = scale * query @ feats.T
    return out


class AlproPrompter(nnx.Module):
  """ALPRO's entity prompter (salesforce/ALPRO `src/modeling/alpro_models.py`, `Prompter`): a video
  tower's class token and a text tower's [CLS], each through a Linear into `embed_dim` (256 in
  ALPRO) and L2-normalised; similarity `v . t / temp` with a learnable `temp` (init 0.07, clamped
  to [0.001, 0.5] where it is read). It has TMVM's interface (one prototype per clip) so the
  `video_retrieval` task trains it with the video-text contrastive loss ALPRO pretrains it with.

  `vision`: a registered video model whose `tokens(video)` is [B, 1 + N, D] with the class token
  first (`timesformer_b16`); frames are normalised with CLIP's mean and std, and padded frames are
  not masked (the video tower sees the whole clip, as ALPRO's). `text`: a registered text encoder
  with `pooled` (`bert_base`, text layers only)."""

  def __init__(self, *, vision: dict, text: dict, embed_dim: int = 256, temp: float = 0.07,
               rngs: nnx.Rngs):
    self.vision = models.build(dict(vision), rngs=rngs)
    self.text = models.build(dict(text), rngs=rngs)
    self.vision_proj = linear(self.vision.num_features, embed_dim, rngs=rngs)
    self.text_proj = linear(self.text.num_features, embed_dim, rngs=rngs)
    self.temp = nnx.Param(jnp.asarray(temp, jnp.float32))

  def encode_text(self, ids, mask):
    """[B, embed_dim] unit text features."""
    return vl.l2_normalise(self.text_proj(self.text.pooled(self.text(ids, mask), ids, mask)))

  def prototypes(self, video, frame_mask):
    """(unit video features [B, 1, embed_dim], attention [B, 1, 1] = 1): TMVM's interface."""
    v = vl.l2_normalise(self.vision_proj(self.vision.tokens(normalise_frames(video))[:, 0]))
    return v[:, None], jnp.ones((v.shape[0], 1, 1), v.dtype)

  def scale(self):
    return 1.0 / jnp.clip(self.temp[...], *TEMP_RANGE)

  def __call__(self, video, frame_mask, ids, mask):
    """(similarity [B_text, B_video], attention) of a batch of pairs."""
    protos, attn = self.prototypes(video, frame_mask)
    return vl.prototype_similarity(self.encode_text(ids, mask), protos, self.scale()), attn


@models.register("alpro_prompter")
def alpro_prompter(*, rngs: nnx.Rngs, **kw):
  """ALPRO's Prompter dual encoder (video tower, text tower, 256-d projections, temperature)."""
  return AlproPrompter(rngs=rngs, **kw)


@models.register("heurvidqa")
def heurvidqa(*, rngs: nnx.Rngs, **kw):
  """HeurVidQA [inferred injection]: ALPRO's QA classifier plus a frozen entity/action prompter."""
  return HeurVidQA(rngs=rngs, **kw)


class PrompterWeights(convert.Converter):
  """The prompter's weights from a file of the prompter model alone: our `prompter/<path>` reads
  what the `base` converter reads for `<path>`. Registered as `prompter_ours` (the prompter's own
  run, e.g. an `alpro_prompter` or `tmvm` retrieval workdir) and `prompter_open_clip` (a CLIP
  file straight into a `tmvm` prompter with CLIP towers). Use them with
  `init_from.skip=r"^(?!prompter/)"` so that the QA towers keep their own initialisation."""
  base = "ours"

  def __init__(self):
    self._base = convert.get(self.base)
    self.ignore = self._base.ignore

  def keys(self, path):
    return self._base.keys(path.removeprefix("prompter/"))

  def rename_file(self, theirs):
    return self._base.rename_file(theirs)

  def to_ours(self, path, arrays):
    return self._base.to_ours(path.removeprefix("prompter/"), arrays)

  def to_file(self, path, value):
    return self._base.to_file(path.removeprefix("prompter/"), value)


for _base in ("ours", "open_clip"):
  convert.register(f"prompter_{_base}")(
      type(f"PrompterWeights_{_base}", (PrompterWeights,), {"base": _base}))

"""Video QA models: ALPRO's classification baseline and MCG's generative model [inferred].

All share ALPRO's encoder (salesforce/ALPRO `src/modeling/alpro_models.py`, `AlproForSequence
Classification`): a vision tower gives the clip's tokens -- a video model with `time_embed`
(TimeSformer, ALPRO's tower) runs on the whole clip once and, as ALPRO's `TimeSformer.
forward_features` (`src/modeling/timesformer/vit.py`, `pooling="temporal"`), its patch tokens are
averaged over time: [class token; mean_t patch(t, p) for each of the P positions]; an image model
(class token first, `models.tmvm.frame_tokens`) runs on each frame and the frames' tokens are
concatenated, padded frames masked -- and a BERT (`models/bert.py`) encodes the question in its
text-only layers (before `fusion_layer`) and fuses it with the video tokens in the rest. The fusion
is ALPRO's by default (`text.fusion="concat"`): the fusion layers run self-attention over the
concatenation [question states; video tokens] with the concatenated mask, and the head reads the
fused [CLS] (position 0); `text.fusion="cross"` selects ALBEF's cross-attention layers instead,
for comparison.

* `videoqa_classifier`: ALPRO's QA head on the fused [CLS] token, `Linear(D, 2D) -> ReLU ->
  Linear(2D, num_answers)` (768 -> 1536 -> answers in ALPRO).
* `videoqa_multiple_choice`: multiple-choice QA (NExT-QA's 5 candidates) as ALPRO-style encoders
  are fine-tuned for it (ClipBERT / ALPRO's TGIF-QA action and transition tasks, NExT-QA's BERT
  baselines): each candidate is read with its question as one text "[CLS] question [SEP]
  candidate [SEP]", fused with the (shared) video tokens, and the same MLP head with one output
  scores it; the C scores of a question are its logits for a cross-entropy over candidates.
* `mcg` (Yu et al., arXiv 2410.09379; no public code, paper text unreadable here: the structure is
  our reading of its abstract [inferred]): the same encoder plus ALPRO-style projections
  `vision_proj` / `text_proj` into an `embed_dim` space (256 in ALPRO) for the instance-level
  (class tokens) and token-level (all tokens) contrastive losses, a learnable temperature `temp`
  (init 0.07, clamped to [0.001, 0.5] where it is read, as ALPRO's `self.temp.clamp_`), and the
  answer decoder (`models/answer_decoder.py`) cross-attending to the fused question tokens.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from losses import video as vl
from models._vision_layers import linear
from models.tmvm import frame_tokens, normalise_frames

TEMP_RANGE = (0.001, 0.5)


def temporal_mean_tokens(tokens, frames: int):
  """[B, 1 + P, D]: the class token, then each patch position's mean over the `frames` frames of a
  TimeSformer's tokens [B, 1 + P T, D] (patch-major, frame-minor: ALPRO's '(h w t)' order)."""
  b, n, d = tokens.shape
  patches = tokens[:, 1:].reshape(b, (n - 1) // frames, frames, d)
  return jnp.concatenate([tokens[:, :1], patches.mean(axis=2)], axis=1)


class VideoQAEncoder(nnx.Module):
  """Vision tower + BERT with fusion layers (module docstring; the text's `fusion` defaults to
  ALPRO's "concat")."""

  def __init__(self, *, vision: dict, text: dict, rngs: nnx.Rngs):
    self.vision = models.build(dict(vision), rngs=rngs)
    self.text = models.build(dict({"fusion": "concat"}, **text), rngs=rngs)
    self.width = self.text.num_features

  def video_tokens(self, video, frame_mask):
    """(tokens [B, N, Dv], mask [B, N]) of uint8 clips [B, T, H, W, 3]: N = 1 + P for a video
    tower (time-averaged patches), T (1 + P) for an image tower."""
    b, t = video.shape[:2]
    if hasattr(self.vision, "time_embed"):  # a video tower sees the whole clip, padding included
      x = temporal_mean_tokens(self.vision.tokens(normalise_frames(video)), t)
      return x, jnp.ones(x.shape[:2], bool)
    x = frame_tokens(self.vision, normalise_frames(video.reshape(b * t, *video.shape[2:])))
    x = x.reshape(b, t * x.shape[1], x.shape[-1])
    return x, jnp.repeat(frame_mask, x.shape[1] // t, axis=1)

  def encode(self, video, frame_mask, question, question_mask):
    """(video tokens, their mask, question hidden states [B, L, D], fused states [B, L, D])."""
    v, vmask = self.video_tokens(video, frame_mask)
    q = self.text(question, question_mask)
    return v, vmask, q, self.text.fuse(q, question_mask, v, vmask)


class QAHead(nnx.Module):
  """ALPRO's classifier: Linear(D, 2D) -> ReLU -> Linear(2D, answers)."""

  def __init__(self, dim, answers, *, rngs):
    self.fc1 = linear(dim, 2 * dim, rngs=rngs)
    self.fc2 = linear(2 * dim, answers, rngs=rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.relu(self.fc1(x)))


class VideoQAClassifier(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, num_answers: int, rngs: nnx.Rngs):
    self.encoder = VideoQAEncoder(vision=vision, text=text, rngs=rngs)
    self.head = QAHead(self.encoder.width, num_answers, rngs=rngs)

  def __call__(self, video, frame_mask, question, question_mask):
    """Answer logits [B, num_answers]."""
    fused = self.encoder.encode(video, frame_mask, question, question_mask)[3]
    return self.head(fused[:, 0])


class VideoQAMultipleChoice(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, rngs: nnx.Rngs):
    self.encoder = VideoQAEncoder(vision=vision, text=text, rngs=rngs)
    self.head = QAHead(self.encoder.width, 1, rngs=rngs)

  def __call__(self, video, frame_mask, candidates, candidates_mask):
    """Candidate logits [B, C] of `candidates` [B, C, L] ("[CLS] question [SEP] answer [SEP]")."""
    v, vmask = self.encoder.video_tokens(video, frame_mask)
    b, c, n = candidates.shape
    ids, mask = candidates.reshape(b * c, n), candidates_mask.reshape(b * c, n)
    q = self.encoder.text(ids, mask)
    fused = self.encoder.text.fuse(q, mask, jnp.repeat(v, c, axis=0), jnp.repeat(vmask, c, axis=0))
    return self.head(fused[:, 0]).reshape(b, c)


class MCG(nnx.Module):
  def __init__(self, *, vision: dict, text: dict, decoder: dict, embed_dim: int = 256,
               temp: float = 0.07, rngs: nnx.Rngs):
    self.encoder = VideoQAEncoder(vision=vision, text=text, rngs=rngs)
    self.vision_proj = linear(self.encoder.vision.num_features, embed_dim, rngs=rngs)
    self.text_proj = linear(self.encoder.width, embed_dim, rngs=rngs)
    self.temp = nnx.Param(jnp.asarray(temp, jnp.float32))
    self.decoder = models.build(dict(decoder, memory_width=self.encoder.width), rngs=rngs)

  def temperature(self):
    return jnp.clip(self.temp[...], *TEMP_RANGE)

  def __call__(self, video, frame_mask, question, question_mask, answer, answer_mask):
    """Dict: `video` [B, N, E] / `question` [B, L, E] unit projected tokens (class token first),
    their masks, and teacher-forced answer `logits` [B, La - 1, V] predicting answer[:, 1:]."""
    v, vmask, q, fused = self.encoder.encode(video, frame_mask, question, question_mask)
    logits = self.decoder(answer[:, :-1], answer_mask[:, :-1], fused, question_mask)
    return {"video": vl.l2_normalise(self.vision_proj(v)), "video_mask": vmask,
            "question": vl.l2_normalise(self.text_proj(q)), "logits": logits}

  def init_decoding(self, video, frame_mask, question, question_mask, max_len: int):
    """The decoder's cache over the fused question tokens (`models.decoding` searches it)."""
    fused = self.encoder.encode(video, frame_mask, question, question_mask)[3]
    return self.decoder.init_cache(fused, question_mask, max_len)


@models.register("videoqa_classifier")
def videoqa_classifier(*, rngs: nnx.Rngs, **kw):
  """ALPRO's video QA classifier (vision tower, BERT with fusion layers, MLP head)."""
  return VideoQAClassifier(rngs=rngs, **kw)


@models.register("videoqa_multiple_choice")
def videoqa_multiple_choice(*, rngs: nnx.Rngs, **kw):
  """Multiple-choice video QA: ALPRO's encoder scoring each (question, candidate) text."""
  return VideoQAMultipleChoice(rngs=rngs, **kw)


@models.register("mcg")
def mcg(*, rngs: nnx.Rngs, **kw):
  """MCG [inferred]: ALPRO encoder, contrastive projections, answer decoder."""
  return MCG(rngs=rngs, **kw)

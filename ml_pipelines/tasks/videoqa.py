"""Video question answering: classification over an answer vocabulary (ALPRO) and generation (MCG).

`videoqa_classification` (model `videoqa_classifier`): cross-entropy of the answer logits against
`label` (ALPRO `AlproForSequenceClassification`, `F.cross_entropy`); questions whose answer is
outside the vocabulary (label -1) are left out of the loss. Evaluation: arg-max answer, accuracy
overall and per question type (a label of -1 is always wrong).

`videoqa_multiple_choice` (model `videoqa_multiple_choice`): the same cross-entropy over the C
candidate logits of each question against `label`, the correct candidate (NExT-QA); evaluation
as above, and per group of types when the dataset declares `qtype_groups` (NExT-QA: causal,
temporal, descriptive).

`videoqa_generation` (model `mcg`, [inferred] loss forms, see losses/videoqa.py):
  `L = answer_weight * CE_ls(answer) + icl_weight * L_ICL + tcl_weight * L_TCL`,
  `L_ICL = symmetric_cross_entropy(v_cls q_cls^T / tau)`,
  `L_TCL = symmetric_cross_entropy(late_interaction(v, q) / tau)`, tau the model's clamped
  learnable temperature, CE_ls the teacher-forced label-smoothed answer cross-entropy.
Evaluation: the answer is decoded from [CLS] (greedy, or beam search with `beams` > 1,
models/decoding.py) up to [SEP], and compared with the reference by exact match after SQuAD
normalisation, overall and per question type (evaluators/qa.py). The ids of [PAD], [CLS] and [SEP]
are those of the vocabulary the dataset declares (`info["vocab"]`: moving_shapes' word list, or a
BERT `vocab.txt` where they are 0, 101 and 102), and WordPiece pieces ("##ing") are joined back
onto their word when the answer is turned into text.
Options: answer_weight (1), icl_weight (1), tcl_weight (1), smoothing (0.1), beams (1).

Batch keys: ml_pipelines/data/videoqa.py.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from losses import video as vl
from losses import videoqa as qal
from ml_pipelines import tasks
from ml_pipelines.evaluators import qa
from ml_pipelines.tasks.base import Task
from models import decoding

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]")


def special_ids(vocab) -> tuple[int, int, int]:
  """The ids of [PAD], [CLS] and [SEP] in `vocab` (the token list a dataset's ids index)."""
  index = {w: i for i, w in enumerate(vocab)}
  missing = [w for w in SPECIAL_TOKENS if w not in index]
  if missing:
    raise ValueError(f"The dataset's vocabulary ({len(index)} tokens) has no {missing}: an answer "
                     f"generator starts from [CLS], stops at [SEP] and pads with [PAD].")
  return tuple(index[w] for w in SPECIAL_TOKENS)


def _inputs(batch):
  return batch["video"], batch["frame_mask"], batch["question"], batch["question_mask"]


def _report(env, config, correct, index):
  info = env.dataset(config.data.eval_split).info
  types = np.asarray(info["qtypes"])[_qtypes(env, config)[index]]
  return qa.accuracy_by_type(correct, types, info.get("qtype_groups"))


def _cross_entropy(logits, labels):
  """Mean cross-entropy over the examples with a label >= 0, and the accuracy over all."""
  valid = labels >= 0
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                       jnp.maximum(labels, 0))
  loss = jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
  return loss, {"metrics": {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}}


def _qtypes(env, config):
  ds = env.dataset(config.data.eval_split)
  return np.asarray([ds.source[i]["qtype"] for i in range(len(ds.source))])


@tasks.register("videoqa_classification")
class VideoQAClassification(Task):

  def init_extra(self, env, rng, params):
    found, width = env.dataset("train").info["num_answers"], self.config.model.num_answers
    if found > width:
      raise ValueError(f"The training set has {found} distinct answers, more than the "
                       f"classifier's model.num_answers={width}: raise num_answers.")
    return None

  def loss(self, model, batch, rng, extra, step):
    return _cross_entropy(model(*_inputs(batch)), batch["label"])

  @staticmethod
  def predictions(model, batch):
    return {"prediction": jnp.argmax(model(*_inputs(batch)), -1), "label": batch["label"]}

  def evaluate(self, env, state):
    out = env.predict(state, self.predictions, split=self.config.data.eval_split)
    return _report(env, self.config, out["prediction"] == out["label"], out["index"])


def _choice_inputs(batch):
  return batch["video"], batch["frame_mask"], batch["candidates"], batch["candidates_mask"]


@tasks.register("videoqa_multiple_choice")
class VideoQAMultipleChoice(Task):

  def loss(self, model, batch, rng, extra, step):
    return _cross_entropy(model(*_choice_inputs(batch)), batch["label"])

  @staticmethod
  def predictions(model, batch):
    return {"prediction": jnp.argmax(model(*_choice_inputs(batch)), -1), "label": batch["label"]}

  def evaluate(self, env, state):
    out = env.predict(state, self.predictions, split=self.config.data.eval_split)
    return _report(env, self.config, out["prediction"] == out["label"], out["index"])


@tasks.register("videoqa_generation")
class VideoQAGeneration(Task):
  OPTIONS = frozenset({"answer_weight", "icl_weight", "tcl_weight", "smoothing", "beams"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.weights = {k: float(t.get(k, 1.0)) for k in ("answer_weight", "icl_weight",
                                                         "tcl_weight")}
    self.smoothing = float(t.get("smoothing", 0.1))
    self.beams = int(t.get("beams", 1))
    self.special = None  # (pad, cls, sep) of the dataset's vocabulary, read in `evaluate`

  def loss(self, model, batch, rng, extra, step):
    out = model(*_inputs(batch), batch["answer"], batch["answer_mask"])
    tau = model.temperature()
    v, q = out["video"], out["question"]
    icl = vl.symmetric_cross_entropy(v[:, 0] @ q[:, 0].T / tau)
    tcl = vl.symmetric_cross_entropy(
        qal.late_interaction(v, q, out["video_mask"], batch["question_mask"]) / tau)
    gen = qal.answer_cross_entropy(out["logits"], batch["answer"][:, 1:],
                                   batch["answer_mask"][:, 1:], self.smoothing)
    w = self.weights
    loss = w["answer_weight"] * gen + w["icl_weight"] * icl + w["tcl_weight"] * tcl
    return loss, {"metrics": {"answer_ce": gen, "icl": icl, "tcl": tcl, "temp": tau}}

  def decode(self, model, batch):
    """Generated answer tokens [B, La - 1] (greedy, or the best beam)."""
    pad, cls, sep = self.special
    max_len = batch["answer"].shape[1] - 1
    cache = model.init_decoding(*_inputs(batch), max_len)
    bos = jnp.full((batch["answer"].shape[0],), cls, jnp.int32)
    if self.beams == 1:
      return {"tokens": decoding.greedy(model.decoder.step, cache, bos, max_len, eos=sep,
                                        pad=pad)[0]}
    tokens, _ = decoding.beam_search(model.decoder.step, cache, bos, max_len, beams=self.beams,
                                     eos=sep, pad=pad)
    return {"tokens": tokens[:, 0]}

  def evaluate(self, env, state):
    info = env.dataset(self.config.data.eval_split).info
    self.special = special_ids(info["vocab"])
    out = env.predict(state, self.decode, split=self.config.data.eval_split)
    texts = [detokenize(t, info["vocab"], self.special) for t in out["tokens"]]
    refs = [info["answers"][i] for i in out["index"]]
    return _report(env, self.config, qa.exact_match(texts, refs), out["index"])


def detokenize(tokens, vocab, special: tuple[int, int, int] | None = None) -> str:
  """Text of `tokens` up to the first [SEP]: [PAD] / [CLS] dropped, WordPiece continuations
  ("##s") joined onto the previous word. `special`: `special_ids(vocab)`, if already known."""
  pad, cls, sep = special or special_ids(vocab)
  words: list[str] = []
  for t in np.asarray(tokens).tolist():
    if t == sep:
      break
    if t in (pad, cls):
      continue
    piece = vocab[t]
    if piece.startswith("##") and words:
      words[-1] += piece[2:]
    else:
      words.append(piece)
  return " ".join(words)

"""Video question answering data: the QA layout, the answer vocabulary, and `moving_shapes_qa`.

Layout of one example (every split; training examples draw their frames with
`data.train_sampling`, the others uniformly):
  `video` uint8 [T, H, W, 3], `frame_mask` [T], `question` / `question_mask` [Lq] ("[CLS] words
  [SEP]", padded), `label` int32 (the answer's class in the answer vocabulary, -1 when the answer
  is not in it), `answer` / `answer_mask` [La] (the answer's tokens "[CLS] words [SEP]" for a
  generator: [CLS] starts decoding, [SEP] ends it), `qtype` int32 (index into `info["qtypes"]`).
`info`: `answers` (the answer text of each example, for exact match), `qtypes`, `ans2label`,
`vocab` (the token list the ids index: its [PAD] / [CLS] / [SEP] are the special ids), `vocab_size`,
`num_answers`, and optionally `qtype_groups` (type -> group, e.g. NExT-QA's codes -> causal /
temporal / descriptive; evaluation also reports each group).

Multiple choice (NExT-QA; `candidates=` given to `qa_split`): the same fields, and `candidates` /
`candidates_mask` [C, Lq + La - 1], candidate c read with its question as "[CLS] question [SEP]
candidate c [SEP]" (the question's words are truncated first when the pair is too long); `label`
is the index of the correct candidate and `answer` its tokens (for a generator).

Answer vocabulary (classification): ALPRO's `train_ans2label.json` convention (salesforce/ALPRO,
`src/datasets/dataset_video_qa.py`): a dict answer -> label built from the *training* answers,
here ordered by decreasing count, ties by text. A training answer outside a given vocabulary is an
error; an evaluation answer outside it gets label -1 and counts as wrong (ALPRO scores such
questions as misses: they stay in the denominator).

A question longer than `max_words` is truncated (with one warning per split giving the count); a
question naming a missing video is an error.

`moving_shapes_qa`: the QA pairs `moving_shapes.video` writes, typed "action" ("what is the red
circle doing ?" -> "moving left") and "entity" ("what moves left ?" -> "red circle").
Options: frames, size, train_size, test_size, seed, num_frames, train_sampling (uniform |
headtail), max_words (question), answer_words, hard, held_out (answers never trained on: their
questions are dropped from `train` and typed "held-out" elsewhere, e.g. colour-shape
compositions whose words are all seen in other answers).
`moving_shapes_mcqa`: the same questions as multiple choice: the answer and `choices` - 1 (4)
other answers of the same kind (the 5 actions; 4 of the 14 other colour-shape entities), in an
order drawn from `(seed, split, question index)`. Options: those of `moving_shapes_qa`, choices.
"""
from __future__ import annotations

import collections
import warnings
from typing import Callable, Sequence

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import moving_shapes
from ml_pipelines.data import video as video_lib
from ml_pipelines.data.video_text import _base_split, _ms_videos, _opts

MS_QA_DEFAULTS = dict(frames=8, size=32, train_size=2000, test_size=500, seed=0, num_frames=8,
                      train_sampling="uniform", max_words=12, answer_words=5, hard=False,
                      held_out=(), min_objects=2, max_objects=3)


class AnswerVocabularyError(ValueError):
  """A training answer is not in the classification answer vocabulary."""


def answer_vocabulary(answers: Sequence[str]) -> dict[str, int]:
  """ALPRO-style `ans2label` of the training answers: most frequent first, ties by text."""
  counts = collections.Counter(answers)
  order = sorted(counts, key=lambda a: (-counts[a], a))
  return {a: i for i, a in enumerate(order)}


def answer_labels(answers: Sequence[str], ans2label: dict[str, int], split: str) -> np.ndarray:
  """int32 labels; -1 for an evaluation answer outside `ans2label`, an error for a training one."""
  labels = np.asarray([ans2label.get(a, -1) for a in answers], np.int32)
  missing = sorted({a for a, y in zip(answers, labels) if y < 0})
  if missing and split == "train":
    raise AnswerVocabularyError(
        f"{len(missing)} training answers are not in the answer vocabulary of "
        f"{len(ans2label)} answers (e.g. {missing[:3]}): rebuild the vocabulary from the training "
        f"answers or drop those questions.")
  return labels


def warn_long_questions(questions: Sequence[str], max_words: int, split: str,
                        count: Callable[[str], int] | None = None) -> None:
  """One warning for the questions whose "[CLS] tokens [SEP]" exceed `max_words` tokens;
  `count(text)`: its number of tokens (default: whitespace words)."""
  count = count or (lambda q: len(q.split()))
  long = [q for q in questions if count(q) + 2 > max_words]
  if long:
    warnings.warn(f"{split}: {len(long)} of {len(questions)} questions are longer than "
                  f"data.max_words={max_words} tokens and are truncated (e.g. {long[0]!r}).",
                  stacklevel=3)


def pair_tokens(q_ids, q_mask, a_ids, a_mask, length: int) -> tuple[np.ndarray, np.ndarray]:
  """"[CLS] question [SEP] answer [SEP]" ids and mask [n, length] from the two texts' own
  "[CLS] words [SEP]" tokens (the answer's [CLS] dropped); question words are cut first."""
  out, mask = np.zeros((len(q_ids), length), np.int32), np.zeros((len(q_ids), length), bool)
  for r in range(len(q_ids)):
    q, a = q_ids[r][q_mask[r]], a_ids[r][a_mask[r]][1:]
    room = length - len(a)
    if len(q) > room:
      q = np.concatenate([q[:max(room - 1, 1)], q[-1:]])
    row = np.concatenate([q, a])[:length]
    out[r, :len(row)], mask[r, :len(row)] = row, True
  return out, mask


def qa_split(videos, names: Sequence[str], items: Sequence[tuple[int, str, str, str]], split: str,
             tokenize: Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]], *,
             ans2label: dict[str, int], num_frames: int, max_words: int, answer_words: int,
             train_sampling: str = "uniform", candidates: Sequence[Sequence[str]] | None = None,
             info=None) -> data.Dataset:
  """The QA layout of one split. items: `(video row, question, answer, question type)`;
  `tokenize(texts, length) -> (ids, mask)`; `candidates`: the answer choices of each item
  (multiple choice; its answer must be one of them), or None (open-ended)."""
  questions = [q for _, q, _, _ in items]
  answers = [a for _, _, a, _ in items]
  encode = getattr(tokenize, "encode", None)  # a subword tokenizer counts its own tokens
  warn_long_questions(questions, max_words, split, encode and (lambda q: len(encode(q))))
  q_ids, q_mask = tokenize(questions, max_words)
  a_ids, a_mask = tokenize(answers, answer_words)
  extra_spec, extra = {}, {}
  if candidates is None:
    labels = answer_labels(answers, ans2label, split)
  else:
    labels = np.asarray([list(c).index(a) if a in c else -1 for c, a in zip(candidates, answers)],
                        np.int32)
    if (labels < 0).any():
      i = int(np.flatnonzero(labels < 0)[0])
      raise ValueError(f"{split}: the answer {answers[i]!r} of {questions[i]!r} is not among its "
                       f"candidates {list(candidates[i])}.")
    choices = len(candidates[0])
    flat = [c for cands in candidates for c in cands]
    c_ids, c_mask = tokenize(flat, answer_words)
    pair = max_words + answer_words - 1
    p_ids, p_mask = pair_tokens(np.repeat(q_ids, choices, 0), np.repeat(q_mask, choices, 0),
                                c_ids, c_mask, pair)
    extra = {"candidates": p_ids.reshape(len(items), choices, pair),
             "candidates_mask": p_mask.reshape(len(items), choices, pair)}
    extra_spec = {"candidates": ((choices, pair), np.int32),
                  "candidates_mask": ((choices, pair), np.bool_)}
  qtypes = sorted({t for _, _, _, t in items})
  tindex = {t: i for i, t in enumerate(qtypes)}
  rows = np.asarray([r for r, _, _, _ in items], np.int64)
  missing = [(q, r) for r, q, _, _ in items if not 0 <= r < len(names)]
  if missing:
    raise ValueError(f"{split}: {len(missing)} questions name a video that is not there (e.g. "
                     f"{missing[0][0]!r} -> video row {missing[0][1]} of {len(names)}): "
                     f"prepare that video or drop its questions.")
  types = np.asarray([tindex[t] for _, _, _, t in items], np.int32)
  h, w = np.asarray(videos[int(rows[0])]).shape[1:3]
  spec = {"video": ((num_frames, h, w, 3), np.uint8), "frame_mask": ((num_frames,), np.bool_),
          "question": ((max_words,), np.int32), "question_mask": ((max_words,), np.bool_),
          "answer": ((answer_words,), np.int32), "answer_mask": ((answer_words,), np.bool_),
          "label": ((), np.int32), "qtype": ((), np.int32), **extra_spec}

  def example(i):
    return {"row": rows[i], "question": q_ids[i], "question_mask": q_mask[i], "answer": a_ids[i],
            "answer_mask": a_mask[i], "label": labels[i], "qtype": types[i],
            **{k: v[i] for k, v in extra.items()}}

  def with_video(ex, sampling, rng):
    row = int(ex.pop("row"))
    v, m = video_lib.clip(np.asarray(videos[row]), num_frames, sampling=sampling, rng=rng,
                          name=f"video {names[row]!r}")
    return {**ex, "video": v, "frame_mask": m}

  info = dict(info or {}, answers=answers, qtypes=qtypes, ans2label=ans2label,
              num_answers=len(ans2label))
  return data.Dataset(video_lib._Rows(len(rows), example), spec,
                      preprocess=lambda ex, rng: with_video(dict(ex), train_sampling, rng),
                      eval_preprocess=lambda ex: with_video(dict(ex), "uniform", None), info=info)


def _ms_items(videos, split: str = "test", held_out=()) -> list[tuple[int, str, str, str]]:
  """(video row, question, answer, type) of `videos`; answers in `held_out` are left out of
  `train` and typed "held-out" in the other splits."""
  held = set(held_out)
  items = [(i, q, a, "held-out" if a in held else "action" if q.endswith("doing ?") else "entity")
           for i, v in enumerate(videos) for q, a in v["qa"]]
  return [it for it in items if it[3] != "held-out"] if split == "train" else items


@data.register("moving_shapes_qa")
def moving_shapes_qa(config, split: str) -> data.Dataset:
  o = _opts(config, MS_QA_DEFAULTS)
  split = _base_split(split)
  vids = _ms_videos(o, split)
  train_items = _ms_items(_ms_videos(o, "train"), "train", o["held_out"])
  ans2label = answer_vocabulary([a for _, _, a, _ in train_items])
  return qa_split([v["frames"] for v in vids], [f"{split}/{i}" for i in range(len(vids))],
                  _ms_items(vids, split, o["held_out"]), split, moving_shapes.tokenize, ans2label=ans2label,
                  num_frames=o["num_frames"], max_words=o["max_words"],
                  answer_words=o["answer_words"], train_sampling=o["train_sampling"],
                  info={"vocab": moving_shapes.VOCAB, "vocab_size": len(moving_shapes.VOCAB)})


MS_ACTIONS = tuple("staying still" if m == "static" else f"moving {m}" for m in moving_shapes.MOTIONS)
MS_ENTITIES = tuple(f"{c} {s}" for s in moving_shapes.SHAPES for c in moving_shapes.COLOURS)


def _ms_choices(seed: int, split: str, index: int, answer: str, qtype: str, choices: int):
  """The answer and `choices - 1` distinct others of its kind, in a seeded random order."""
  rng = np.random.default_rng((seed, moving_shapes.SPLITS[split], index, 7))
  others = [a for a in (MS_ACTIONS if qtype == "action" else MS_ENTITIES) if a != answer]
  picked = [others[j] for j in rng.permutation(len(others))[:choices - 1]]
  picked.insert(int(rng.integers(0, choices)), answer)
  return tuple(picked)


@data.register("moving_shapes_mcqa")
def moving_shapes_mcqa(config, split: str) -> data.Dataset:
  o = _opts(config, dict(MS_QA_DEFAULTS, choices=5))
  if not 2 <= o["choices"] <= len(MS_ACTIONS):
    raise ValueError(f"moving_shapes_mcqa: choices={o['choices']}, must be in [2, 5] (5 actions).")
  split = _base_split(split)
  vids = _ms_videos(o, split)
  items = _ms_items(vids)
  cands = [_ms_choices(o["seed"], split, i, a, t, o["choices"])
           for i, (_, _, a, t) in enumerate(items)]
  return qa_split([v["frames"] for v in vids], [f"{split}/{i}" for i in range(len(vids))], items,
                  split, moving_shapes.tokenize, ans2label={}, num_frames=o["num_frames"],
                  max_words=o["max_words"], answer_words=o["answer_words"],
                  train_sampling=o["train_sampling"], candidates=cands,
                  info={"vocab": moving_shapes.VOCAB, "vocab_size": len(moving_shapes.VOCAB)})

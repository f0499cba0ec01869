"""Video question answering data: the QA layout, the answer vocabulary, and `moving_shapes_qa`.

Layout of one example (every split; training examples draw their frames with
`data.train_sampling`, the others uniformly):
  `video` uint8 [T, H, W, 3], `frame_mask` [T], `question` / `question_mask` [Lq] ("[CLS] words
  [SEP]", padded), `label` int32 (the answer's class in the answer vocabulary, -1 when the answer
  is not in it), `answer` / `answer_mask` [La] (the answer's tokens "[CLS] words [SEP]" for a
  generator: [CLS] starts decoding, [SEP] ends it), `qtype` int32 (index into `info["qtypes"]`).
`info`: `answers` (the answer text of each example, for exact match), `qtypes`, `ans2label`,
`vocab` (the word list the token ids index), `vocab_size`, `num_answers`.

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
headtail), max_words (question), answer_words, hard.
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
                      train_sampling="uniform", max_words=12, answer_words=5, hard=False)


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


def warn_long_questions(questions: Sequence[str], max_words: int, split: str) -> None:
  """One warning for the questions whose "[CLS] words [SEP]" exceed `max_words` tokens."""
  long = [q for q in questions if len(q.split()) + 2 > max_words]
  if long:
    warnings.warn(f"{split}: {len(long)} of {len(questions)} questions are longer than "
                  f"data.max_words={max_words} tokens and are truncated (e.g. {long[0]!r}).",
                  stacklevel=3)


def qa_split(videos, names: Sequence[str], items: Sequence[tuple[int, str, str, str]], split: str,
             tokenize: Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]], *,
             ans2label: dict[str, int], num_frames: int, max_words: int, answer_words: int,
             train_sampling: str = "uniform", info=None) -> data.Dataset:
  """The QA layout of one split. items: `(video row, question, answer, question type)`;
  `tokenize(texts, length) -> (ids, mask)`."""
  questions = [q for _, q, _, _ in items]
  answers = [a for _, _, a, _ in items]
  warn_long_questions(questions, max_words, split)
  q_ids, q_mask = tokenize(questions, max_words)
  a_ids, a_mask = tokenize(answers, answer_words)
  labels = answer_labels(answers, ans2label, split)
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
          "label": ((), np.int32), "qtype": ((), np.int32)}

  def example(i):
    return {"row": rows[i], "question": q_ids[i], "question_mask": q_mask[i], "answer": a_ids[i],
            "answer_mask": a_mask[i], "label": labels[i], "qtype": types[i]}

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


def _ms_items(videos) -> list[tuple[int, str, str, str]]:
  return [(i, q, a, "action" if q.endswith("doing ?") else "entity")
          for i, v in enumerate(videos) for q, a in v["qa"]]


@data.register("moving_shapes_qa")
def moving_shapes_qa(config, split: str) -> data.Dataset:
  o = _opts(config, MS_QA_DEFAULTS)
  split = _base_split(split)
  vids = _ms_videos(o, split)
  train_items = _ms_items(_ms_videos(o, "train"))
  ans2label = answer_vocabulary([a for _, _, a, _ in train_items])
  return qa_split([v["frames"] for v in vids], [f"{split}/{i}" for i in range(len(vids))],
                  _ms_items(vids), split, moving_shapes.tokenize, ans2label=ans2label,
                  num_frames=o["num_frames"], max_words=o["max_words"],
                  answer_words=o["answer_words"], train_sampling=o["train_sampling"],
                  info={"vocab": moving_shapes.VOCAB, "vocab_size": len(moving_shapes.VOCAB)})

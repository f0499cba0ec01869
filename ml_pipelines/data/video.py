"""Video clips for video-language methods: frame sampling, tokenised text, and the two example
layouts (retrieval and grounding) every video dataset builder returns.

A stored video is `frames` uint8 [L, H, W, 3] at a fixed rate and size (what
`ml_pipelines.prep.video` writes, or what `moving_shapes` draws). A clip is `num_frames` of them:
- `uniform`: `np.linspace(0, L - 1, num_frames)` cast to int (CLIP4Clip's `slice_framepos=2`,
  ArrowLuo/CLIP4Clip `dataloaders/dataloader_msrvtt_retrieval.py`);
- `headtail`: num_frames/2 sorted distinct random frames from the first half `[0, L//2)` and
  num_frames/2 from the second half `[L//2, L)` (ALPRO `src/datasets/dataset_base.py`,
  `frm_sampling_strategy == "headtail"`), drawn with the example's generator, which the pipeline
  seeds by (seed, step, index): deterministic and resumable.
Training clips use `train_sampling` (default uniform), evaluation clips always use uniform.
A video shorter than `num_frames` is an error naming it, unless `pad_short=True`: then all its
frames are kept and the clip is padded with black frames whose `frame_mask` is False (CLIP4Clip's
`video_mask`).

Retrieval layout (TMVM): split `train` has one example per (video, caption) pair: `video` uint8
[T, H, W, 3], `frame_mask` bool [T], `text` int32 [Lt], `text_mask` bool [Lt]. For evaluation the
gallery and the queries are separate splits: `<split>` holds each video once (`video`,
`frame_mask`) and `<split>_text` each caption once (`text`, `text_mask`, `video_index`: the row
of its video in `<split>`).

Grounding layout (STVG): one example per (video, sentence): `video`, `frame_mask`, `text`,
`text_mask`, `boxes` float32 [T, 4] (cx, cy, w, h) normalised to [0, 1] (TubeDETR's target
format), `box_mask` bool [T] (frames inside the annotated tube), `start`/`end` int32 (first
and last frame of the tube, inclusive). Grounding clips are the whole stored video (`num_frames`
frames exactly: the prep writes them at a fixed rate and length).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ml_pipelines import data

SAMPLING = ("uniform", "headtail")


class ShortVideoError(ValueError):
  """A video has fewer frames than a clip asks for."""


def uniform_indices(length: int, num: int) -> np.ndarray:
  """`num` evenly spaced frame indices of a video of `length` frames (CLIP4Clip)."""
  return np.linspace(0, length - 1, num=num, dtype=int)


def headtail_indices(length: int, num: int, rng: np.random.Generator) -> np.ndarray:
  """num/2 sorted distinct indices from [0, length//2), num/2 from [length//2, length) (ALPRO)."""
  if num % 2:
    raise ValueError(f"head-tail sampling needs an even number of frames, got {num}.")
  half = length // 2
  head = np.sort(rng.choice(half, num // 2, replace=False))
  tail = half + np.sort(rng.choice(length - half, num // 2, replace=False))
  return np.concatenate([head, tail]).astype(int)


def clip(frames: np.ndarray, num: int, *, sampling: str = "uniform",
         rng: np.random.Generator | None = None, pad_short: bool = False, name: str = "video"
         ) -> tuple[np.ndarray, np.ndarray]:
  """`(clip uint8 [num, H, W, 3], frame_mask bool [num])` from `frames` [L, H, W, 3]."""
  length = len(frames)
  if length < num:
    if not pad_short:
      raise ShortVideoError(
          f"{name} has {length} frames, fewer than the {num} frames a clip takes. Prepare it at a "
          f"higher frame rate, ask for fewer frames (data.num_frames), or set data.pad_short=True "
          f"to pad short clips with masked black frames (CLIP4Clip's video_mask).")
    out = np.zeros((num, *frames.shape[1:]), np.uint8)
    out[:length] = frames
    return out, np.arange(num) < length
  if sampling == "uniform":
    idx = uniform_indices(length, num)
  elif sampling == "headtail":
    idx = headtail_indices(length, num, rng)
  else:
    raise ValueError(f"Unknown frame sampling {sampling!r}; use one of {SAMPLING}.")
  return np.asarray(frames)[idx].astype(np.uint8), np.ones(num, bool)


class WordTokenizer:
  """Whitespace words of lower-cased text over a fixed vocabulary: "[CLS] words [SEP]" padded with
  0 to `length` (ids 0-3 are [PAD] [CLS] [SEP] [UNK]). For embedded and fake data; real runs use
  the CLIP BPE tokenizer (`tokenizer="clip"`)."""

  def __init__(self, vocab: Sequence[str], length: int):
    self.vocab, self.length = tuple(vocab), int(length)
    self._ids = {w: i for i, w in enumerate(self.vocab)}

  @classmethod
  def from_texts(cls, texts, length: int) -> "WordTokenizer":
    words = sorted({w for t in texts for w in t.lower().split()})
    return cls(("[PAD]", "[CLS]", "[SEP]", "[UNK]", *words), length)

  def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(texts), self.length), np.int32)
    for r, text in enumerate(texts):
      words = [1] + [self._ids.get(w, 3) for w in text.lower().split()][:self.length - 2] + [2]
      out[r, :len(words)] = words
    return out, out > 0


def clip_tokenizer(length: int) -> Callable:
  """The CLIP BPE tokenizer (models/clip_tokenizer.py): ids [n, length] int32, mask = ids > 0."""
  from models.clip_tokenizer import tokenize as clip_tokenize

  def tokenize(texts):
    ids = np.asarray(clip_tokenize(list(texts), context_length=length), np.int32)
    return ids, ids > 0
  return tokenize


def tokenizer(kind: str, length: int, texts=()) -> Callable:
  if kind == "clip":
    return clip_tokenizer(length)
  if kind == "words":
    return WordTokenizer.from_texts(texts, length)
  raise ValueError(f"Unknown tokenizer {kind!r}; use 'clip' or 'words'.")


class _Rows:
  """Random access `source[i] = fn(i)` over `n` rows."""

  def __init__(self, n: int, fn: Callable[[int], dict]):
    self._n, self._fn = n, fn

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i: int) -> dict:
    return self._fn(int(i))


def retrieval_split(videos, names: Sequence[str], pairs: Sequence[tuple[int, str]], split: str,
                    tokenize: Callable, *, num_frames: int, train_sampling: str = "uniform",
                    pad_short: bool = False, info=None) -> data.Dataset:
  """The retrieval layout (module docstring) of one split.

  videos: random access `videos[row] -> frames [L, H, W, 3]`; names: a name per row (for
  messages); pairs: `(video row, caption)` of the split; split: "train" (pairs), "<x>" (each
  video of the pairs once) or "<x>_text" (each caption once)."""
  ids, mask = tokenize([c for _, c in pairs])
  rows = np.asarray([v for v, _ in pairs], np.int64)
  gallery = np.unique(rows)
  h, w = np.asarray(videos[int(rows[0])]).shape[1:3] if len(rows) else (0, 0)
  vspec = {"video": ((num_frames, h, w, 3), np.uint8), "frame_mask": ((num_frames,), np.bool_)}
  tspec = {"text": (ids.shape[1:], np.int32), "text_mask": (ids.shape[1:], np.bool_)}

  def video_of(row, sampling="uniform", rng=None):
    v, m = clip(np.asarray(videos[row]), num_frames, sampling=sampling, rng=rng,
                pad_short=pad_short, name=f"video {names[row]!r}")
    return {"video": v, "frame_mask": m}

  info = dict(info or {}, names=[names[r] for r in gallery])
  if split.endswith("_text"):
    where = {r: i for i, r in enumerate(gallery)}
    source = data.ArraySource({"text": ids, "text_mask": mask,
                               "video_index": np.asarray([where[r] for r in rows], np.int32)})
    return data.Dataset(source, {**tspec, "video_index": ((), np.int32)}, info=info)
  if split != "train":
    return data.Dataset(_Rows(len(gallery), lambda i: video_of(int(gallery[i]))), vspec,
                        info=info)

  def example(i):
    return {"row": rows[i], "text": ids[i], "text_mask": mask[i]}

  def train(ex, rng):
    return {**video_of(int(ex["row"]), train_sampling, rng), "text": ex["text"],
            "text_mask": ex["text_mask"]}

  def evaluate(ex):
    return {**video_of(int(ex["row"])), "text": ex["text"], "text_mask": ex["text_mask"]}
  return data.Dataset(_Rows(len(rows), example), {**vspec, **tspec}, preprocess=train,
                      eval_preprocess=evaluate, info=info)


def grounding_example(frames: np.ndarray, boxes_xyxy: np.ndarray, box_mask: np.ndarray,
                      num_frames: int, name: str) -> dict:
  """A grounding example's video part: the stored frames (exactly `num_frames`, or fewer padded
  with masked frames), boxes as normalised (cx, cy, w, h), and the tube's first and last frame."""
  box_mask = np.asarray(box_mask, bool)
  if not box_mask.any():
    raise ValueError(f"{name}: the annotated tube is empty (no frame has a box); drop the "
                     f"annotation or fix its frame range.")
  frames = np.asarray(frames)
  if len(frames) > num_frames:
    raise ValueError(f"{name} has {len(frames)} frames, more than data.num_frames={num_frames}: "
                     f"prepare it with --max_frames={num_frames}.")
  video, frame_mask = clip(frames, num_frames, pad_short=True, name=name)
  h, w = frames.shape[1:3]
  b = np.zeros((num_frames, 4), np.float32)
  xyxy = np.asarray(boxes_xyxy, np.float32)[:len(frames)] / np.array([w, h, w, h], np.float32)
  b[:len(xyxy)] = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                            xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], -1)
  m = np.zeros(num_frames, bool)
  m[:len(box_mask)] = box_mask[:num_frames]
  t = np.flatnonzero(m)
  return {"video": video, "frame_mask": frame_mask, "boxes": b * m[:, None], "box_mask": m,
          "start": np.int32(t[0]), "end": np.int32(t[-1])}


def grounding_split(n: int, example: Callable[[int], dict], tokenize: Callable, texts,
                    *, num_frames: int, size: tuple[int, int], info=None) -> data.Dataset:
  """The grounding layout of one split: `example(i)` gives the video part (`grounding_example`),
  `texts[i]` the sentence."""
  ids, mask = tokenize(list(texts))

  def row(i):
    return {**example(i), "text": ids[i], "text_mask": mask[i]}
  spec = {"video": ((num_frames, *size, 3), np.uint8), "frame_mask": ((num_frames,), np.bool_),
          "text": (ids.shape[1:], np.int32), "text_mask": (ids.shape[1:], np.bool_),
          "boxes": ((num_frames, 4), np.float32), "box_mask": ((num_frames,), np.bool_),
          "start": ((), np.int32), "end": ((), np.int32)}
  return data.Dataset(_Rows(n, row), spec, info=dict(info or {}))

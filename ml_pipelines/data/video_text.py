"""Video-text datasets: `moving_shapes` (embedded) and the real sets in their standard layouts,
in the retrieval or grounding layout of `ml_pipelines/data/video.py`.

Retrieval (TMVM). Captions are read from the raw annotation files (`ann_dir`, the layouts
CLIP4Clip's loaders read, ArrowLuo/CLIP4Clip `dataloaders/`); frames from the ArrayRecords
`python -m ml_pipelines.prep.video` writes into `data_dir`:
- `msrvtt` (1k-A): train = the videos of `MSRVTT_train.9k.csv` with all their captions from
  `MSRVTT_data.json` (`sentences`: video_id, caption); test = `MSRVTT_JSFUSION_test.csv` (one
  sentence per video, columns key, vid_key, video_id, sentence).
- `didemo` (paragraph retrieval): `{split}_list.txt` and `{split}_data.json` (video, description,
  times); a video's descriptions joined in file order make one paragraph.
- `lsmdc`: tab-separated `LSMDC16_annos_training.csv` / `LSMDC16_annos_val.csv` /
  `LSMDC16_challenge_1000_publictect.csv` (clip_id, 4 times, sentence).
- `msvd`: `{split}_list.txt` and `raw-captions.pkl` ({video_id: [[words]]}).
Options: data_dir, ann_dir, num_frames (12), train_sampling (uniform | headtail), pad_short (False),
tokenizer (clip | words), max_words (32).

Grounding (STVG): `hcstvg` (HC-STVG v1, splits train/test), `hcstvg2` (v2, train/val) and
`vidstg` (VidSTG on VidOR, train/val/test; one example per sentence, declarative and
interrogative): records written by `python -m ml_pipelines.prep.video --grounding=<name>` (frames
at 5 fps, at most `max_frames`, with the box of each frame and the sentence; VidSTG's sentences
point at shared segment clips). Options: data_dir, num_frames, tokenizer, max_words.

Embedded: `moving_shapes_retrieval` (train 2000 / test 500 videos; every caption of a video is a
pair; options frames, size, train_size, test_size, seed, num_frames, train_sampling, max_words,
min_objects, max_objects) and
`moving_shapes_grounding` (one example per object of each video, the sentence naming it; the tube
is the object's motion interval; `hard=True`: two objects of every video look the same and the
sentence names the one with the given motion).
"""
from __future__ import annotations

import csv
import functools
import json
import os
import pickle

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import moving_shapes, records
from ml_pipelines.data import video as video_lib

MS_DEFAULTS = dict(frames=8, size=32, train_size=2000, test_size=500, seed=0, num_frames=8,
                   train_sampling="uniform", max_words=12, hard=False, min_objects=2,
                   max_objects=3)
REAL_SPLITS = {"msrvtt": ("train", "test"), "didemo": ("train", "val", "test"),
               "lsmdc": ("train", "val", "test"), "msvd": ("train", "val", "test")}


def _opts(config, defaults):
  return {k: config.get(k, v) for k, v in defaults.items()}


def _base_split(split: str) -> str:
  return split[:-len("_text")] if split.endswith("_text") else split


@functools.lru_cache(maxsize=4)
def _shapes(seed, split, n, frames, size, hard, objects):
  return [moving_shapes.video(seed, split, i, frames=frames, size=size, hard=hard,
                              objects=objects) for i in range(n)]


def _ms_videos(o, split):
  base = _base_split(split)
  if base not in ("train", "test"):
    raise ValueError(f"moving_shapes has splits train and test, not {split!r}.")
  n = o["train_size"] if base == "train" else o["test_size"]
  return _shapes(o["seed"], base, n, o["frames"], o["size"], bool(o["hard"]),
                 (int(o["min_objects"]), int(o["max_objects"])))


@data.register("moving_shapes_retrieval")
def moving_shapes_retrieval(config, split: str) -> data.Dataset:
  o = _opts(config, MS_DEFAULTS)
  vids = _ms_videos(o, split)
  pairs = [(i, c) for i, v in enumerate(vids) for c in v["captions"]]
  tok = moving_shapes.tokenize
  return video_lib.retrieval_split(
      [v["frames"] for v in vids], [f"{split}/{i}" for i in range(len(vids))], pairs, split,
      lambda texts: tok(texts, o["max_words"]), num_frames=o["num_frames"],
      train_sampling=o["train_sampling"], info={"vocab_size": len(moving_shapes.VOCAB)})


@data.register("moving_shapes_grounding")
def moving_shapes_grounding(config, split: str) -> data.Dataset:
  o = _opts(config, MS_DEFAULTS)
  vids = _ms_videos(o, split)
  items = [(i, k) for i, v in enumerate(vids) for k in range(len(v["objects"]))
           if not o["hard"] or k < 2]  # hard: ground one of the two look-alikes
  texts = [vids[i]["captions"][k] for i, k in items]

  def example(j):
    i, k = items[j]
    v, obj = vids[i], vids[i]["objects"][items[j][1]]
    inside = np.zeros(o["frames"], bool)
    inside[obj.start:obj.end + 1] = True
    return video_lib.grounding_example(v["frames"], v["boxes"][k], inside, o["num_frames"],
                                       f"moving_shapes {split}/{i} object {k}")
  return video_lib.grounding_split(
      len(items), example, lambda t: moving_shapes.tokenize(t, o["max_words"]), texts,
      num_frames=o["num_frames"], size=(o["size"], o["size"]),
      info={"vocab_size": len(moving_shapes.VOCAB), "items": items})


# --- real layouts -----------------------------------------------------------------------------
class VideoStore:
  """The prepared videos of `data_dir` by id: `store[row] -> frames`, `store.row(id)`."""

  def __init__(self, data_dir: str, hint: str):
    index = os.path.join(data_dir, "videos.json")
    if not os.path.exists(index):
      raise FileNotFoundError(f"No prepared videos under {data_dir!r} (videos.json is missing). "
                              f"Prepare them with: {hint}")
    with open(index) as f:
      self.ids = json.load(f)["ids"]
    self._rows = {v: i for i, v in enumerate(self.ids)}
    self._source = records.RecordSource(data_dir, "videos", prepare_hint=hint)
    self.data_dir = data_dir

  def row(self, video_id: str, where: str) -> int:
    if video_id not in self._rows:
      raise KeyError(f"{where} names video {video_id!r}, which is not among the "
                     f"{len(self.ids)} videos prepared in {self.data_dir!r}.")
    return self._rows[video_id]

  def __getitem__(self, row: int) -> np.ndarray:
    return self._source[int(row)]["frames"]


def _lines(path):
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def captions(name: str, ann_dir: str, split: str) -> tuple[list[tuple[str, str]], str]:
  """`([(video_id, caption)], file read)` of `split` in dataset `name`'s standard layout."""
  j = functools.partial(os.path.join, ann_dir)
  if name == "msrvtt":
    if split == "train":
      with open(j("MSRVTT_train.9k.csv")) as f:
        keep = {r["video_id"] for r in csv.DictReader(f)}
      with open(j("MSRVTT_data.json")) as f:
        sents = json.load(f)["sentences"]
      return [(s["video_id"], s["caption"]) for s in sents if s["video_id"] in keep], \
          j("MSRVTT_data.json")
    with open(j("MSRVTT_JSFUSION_test.csv")) as f:
      return [(r["video_id"], r["sentence"]) for r in csv.DictReader(f)], \
          j("MSRVTT_JSFUSION_test.csv")
  if name == "didemo":
    keep = set(_lines(j(f"{split}_list.txt")))
    with open(j(f"{split}_data.json")) as f:
      items = json.load(f)
    paragraphs: dict[str, list[str]] = {}
    for it in items:
      if it["video"] in keep:
        paragraphs.setdefault(it["video"], []).append(it["description"])
    return [(v, " ".join(d)) for v, d in paragraphs.items()], j(f"{split}_data.json")
  if name == "lsmdc":
    file = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
            "test": "LSMDC16_challenge_1000_publictect.csv"}[split]
    rows = [line.split("\t") for line in _lines(j(file))]
    return [(r[0], r[5]) for r in rows], j(file)
  if name == "msvd":
    with open(j("raw-captions.pkl"), "rb") as f:
      caps = pickle.load(f)
    return [(v, " ".join(c)) for v in _lines(j(f"{split}_list.txt")) for c in caps[v]], \
        j("raw-captions.pkl")
  raise ValueError(f"unknown retrieval dataset {name!r}")


def _retrieval_builder(name):
  def build(config, split: str) -> data.Dataset:
    base = _base_split(split)
    if base not in REAL_SPLITS[name]:
      raise ValueError(f"{name} has splits {REAL_SPLITS[name]} (and <split>_text), not {split!r}.")
    d, ann = config.get("data_dir", f"data/{name}"), config.get("ann_dir", f"data/{name}/ann")
    hint = f"python -m ml_pipelines.prep.video --videos_dir=VIDEOS --out_dir={d} --fps=1"
    store = VideoStore(d, hint)
    pairs, file = captions(name, ann, base)
    rows = [(store.row(v, f"caption file {file}"), c) for v, c in pairs]
    words = int(config.get("max_words", 32))
    kind = config.get("tokenizer", "clip")
    texts = [c for _, c in captions(name, ann, "train")[0]] if kind == "words" else ()
    return video_lib.retrieval_split(
        store, store.ids, rows, "train" if split == "train" else split,
        video_lib.tokenizer(kind, words, texts), num_frames=int(config.get("num_frames", 12)),
        train_sampling=config.get("train_sampling", "uniform"),
        pad_short=bool(config.get("pad_short", False)))
  build.__doc__ = f"{name}: retrieval layout from prepared frames and the caption files."
  return build


for _name in REAL_SPLITS:
  data.register(_name)(_retrieval_builder(_name))


def _grounding_builder(name, splits):
  def build(config, split: str) -> data.Dataset:
    if split not in splits:
      raise ValueError(f"{name} has splits {splits}, not {split!r}.")
    d = config.get("data_dir", f"data/{name}")
    hint = (f"python -m ml_pipelines.prep.video --grounding={name} --videos_dir=RAW/video "
            f"--ann_dir={'TUBEDETR_VIDSTG_ANN' if name == 'vidstg' else 'RAW/anno'} --out_dir={d}")
    source = records.RecordSource(d, split, prepare_hint=hint)
    with open(os.path.join(d, f"{split}.json")) as f:
      meta = json.load(f)
    num = int(config.get("num_frames", meta["max_frames"]))
    words = int(config.get("max_words", 32))
    kind = config.get("tokenizer", "clip")
    texts = meta["captions"]
    train_texts = texts
    if kind == "words" and split != "train":
      with open(os.path.join(d, "train.json")) as f:
        train_texts = json.load(f)["captions"]

    clips = records.RecordSource(d, meta["clips"], prepare_hint=hint) if "clips" in meta else None

    def example(i):
      r = source[i]
      frames = clips[int(r["clip"])]["frames"] if clips is not None else r["frames"]
      return video_lib.grounding_example(frames, r["boxes"], r["box_mask"], num,
                                         f"{name} {split} video {meta['ids'][i]!r}")
    return video_lib.grounding_split(len(source), example,
                                     video_lib.tokenizer(kind, words, train_texts), texts,
                                     num_frames=num, size=tuple(meta["size"]))
  build.__doc__ = f"{name}: grounding layout from `prep.video --grounding` records."
  return build


data.register("hcstvg")(_grounding_builder("hcstvg", ("train", "test")))
data.register("hcstvg2")(_grounding_builder("hcstvg2", ("train", "val")))
data.register("vidstg")(_grounding_builder("vidstg", ("train", "val", "test")))

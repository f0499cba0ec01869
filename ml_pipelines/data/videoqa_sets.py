"""Video-QA benchmarks from manual directories in their official annotation layouts, read into the
QA layout of `ml_pipelines/data/videoqa.py` (frames from `prep.video` records, text by BERT's
WordPiece tokenizer over `data.bert_vocab`, bert-base-uncased's `vocab.txt` as ALPRO uses).

Each reads `ann_dir` (annotations as distributed) and `data_dir` (the videos, prepared by
`python -m ml_pipelines.prep.video --videos_dir=<videos> --out_dir=<data_dir> --fps=<rate>`: one
record per video file, its id the file name without extension):
- `nextqa` (Xiao et al., CVPR 2021; doc-doc/NExT-QA): `{train,val,test}.csv` with columns video,
  frame_count, width, height, question, answer (index of the correct candidate), qid, type, a0..a4,
  and `map_vid_vidorID.json` (`video` -> "<folder>/<VidOR id>", the video's path under
  NExTVideo/). Multiple choice over the 5 candidates; types are NExT-QA's codes (TP scored as TN,
  as its `eval_mc.py`) grouped into causal / temporal / descriptive.
- `msrvtt_qa`, `msvd_qa` (Xu et al., ACM MM 2017; xudejing/video-question-answering):
  `{train,val,test}_qa.json`, lists of {answer, id, question, video_id}. MSR-VTT's video_id n is
  video file `video<n>`; MSVD's is `vid<n>`, which `youtube_mapping.txt` (lines "<clip name>
  vid<n>") maps to the YouTube clip file. A string video_id (ALPRO's jsonl) is taken as the file
  name. Types: the question's first word (what / who / how / where / when), as ALPRO's
  `answer_type`.
- `activitynet_qa` (Yu et al., AAAI 2019; MILVLG/activitynet-qa): `{split}_q.json` ({video_name,
  question, question_id}) and `{split}_a.json` ({answer, type, question_id}) joined on
  question_id; the video is `v_<video_name>` (ActivityNet's file names) or `<video_name>`. Types:
  its codes 0-8 (motion, spatial, temporal, yes_no, color, object, location, number, other).

Open-ended answers: the classification vocabulary is `data.ans2label` (a JSON answer -> label
file, ALPRO's `train_ans2label.json`; a training answer outside it is an error), or else the
`data.top_answers` most frequent training answers (ALPRO's vocabularies: MSRVTT-QA 1500 answers,
MSVD-QA 2423; ClipBERT / ALPRO's released training files keep only the questions whose answer is
in it, so the other training questions are dropped here, with a warning giving the count), or else
every training answer. Evaluation questions keep their answer; outside the vocabulary it counts as
wrong (label -1).

Options: data_dir, ann_dir, bert_vocab, num_frames (16), train_sampling (uniform | headtail),
max_words (40, ALPRO's max_txt_len), answer_words (8; nextqa 24), top_answers, ans2label.
A question naming a video that is not prepared is an error naming both; a question longer than
max_words is truncated with a warning.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import warnings

from ml_pipelines import data
from ml_pipelines.data import videoqa
from ml_pipelines.data.video_text import VideoStore
from ml_pipelines.evaluators import qa
from models.bert_tokenizer import BertTokenizer

SPLITS = ("train", "val", "test")
OPEN_TYPES = ("what", "who", "how", "where", "when")
ACTIVITYNET_TYPES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location",
                     "number", "other")


def _json(path):
  with open(path) as f:
    return json.load(f)


def _first_word_type(question: str) -> str:
  word = question.strip().split(" ", 1)[0].lower()
  return word if word in OPEN_TYPES else "other"


def read_nextqa(ann_dir: str, split: str):
  """`(items [(video id, question, answer, type)], candidates, file)` of NExT-QA's `split`."""
  path = os.path.join(ann_dir, f"{split}.csv")
  vid_map = _json(os.path.join(ann_dir, "map_vid_vidorID.json"))
  items, cands = [], []
  with open(path, newline="") as f:
    for row in csv.DictReader(f):
      choices = tuple(row[f"a{k}"].strip() for k in range(5))
      video = str(row["video"])
      if video not in vid_map:
        raise KeyError(f"{path}: video {video!r} (qid {row['qid']}) is not in "
                       f"map_vid_vidorID.json.")
      code = qa.NEXTQA_MERGED.get(row["type"], row["type"])
      items.append((os.path.basename(vid_map[video]), row["question"].strip(),
                    choices[int(row["answer"])], code))
      cands.append(choices)
  return items, cands, path


def _video_name(video_id, prefix: str, mapping: dict | None) -> str:
  name = f"{prefix}{video_id}" if isinstance(video_id, int) else str(video_id)
  return mapping.get(name, name) if mapping is not None else name


def _open_ended(prefix: str, mapping_file: str | None):
  def read(ann_dir: str, split: str):
    path = os.path.join(ann_dir, f"{split}_qa.json")
    mapping = None
    if mapping_file:
      with open(os.path.join(ann_dir, mapping_file)) as f:
        mapping = {vid: clip for clip, vid in (line.split() for line in f if line.strip())}
    items = [(_video_name(q["video_id"], prefix, mapping), q["question"].strip(),
              str(q["answer"]).strip(), _first_word_type(q["question"])) for q in _json(path)]
    return items, None, path
  return read


def read_activitynet_qa(ann_dir: str, split: str):
  qpath = os.path.join(ann_dir, f"{split}_q.json")
  answers = {a["question_id"]: a for a in _json(os.path.join(ann_dir, f"{split}_a.json"))}
  items = []
  for q in _json(qpath):
    a = answers.get(q["question_id"])
    if a is None:
      raise KeyError(f"{split}_a.json has no answer for question_id {q['question_id']!r}.")
    items.append((q["video_name"], q["question"].strip(), str(a["answer"]).strip(),
                  ACTIVITYNET_TYPES[int(a["type"])]))
  return items, None, qpath


READERS = {"nextqa": read_nextqa, "msrvtt_qa": _open_ended("video", None),
           "msvd_qa": _open_ended("vid", "youtube_mapping.txt"),
           "activitynet_qa": read_activitynet_qa}


def answer_vocabulary(config, train_answers) -> tuple[dict[str, int], bool]:
  """(ans2label, whether training questions outside it are dropped): module docstring."""
  if config.get("ans2label"):
    return {str(a): int(i) for a, i in _json(config.get("ans2label")).items()}, False
  vocab = videoqa.answer_vocabulary(train_answers)
  k = config.get("top_answers")
  if k:
    return {a: i for a, i in vocab.items() if i < int(k)}, True
  return vocab, False


def _row(store: VideoStore, name: str, video: str, where: str) -> int:
  if name == "activitynet_qa" and f"v_{video}" in store.ids:
    video = f"v_{video}"
  return store.row(video, where)


def _builder(name: str):
  def build(config, split: str) -> data.Dataset:
    if split not in SPLITS:
      raise ValueError(f"{name} has splits {SPLITS}, not {split!r}.")
    d, ann = config.get("data_dir", f"data/{name}"), config.get("ann_dir", f"data/{name}/ann")
    if not config.get("bert_vocab"):
      raise ValueError(f"{name}: set data.bert_vocab to a BERT vocab.txt (bert-base-uncased's).")
    store = VideoStore(d, f"python -m ml_pipelines.prep.video --videos_dir=VIDEOS --out_dir={d} "
                          f"--fps=3")
    items, cands, file = READERS[name](ann, split)
    ans2label = {}
    if cands is None:
      train_answers = [a for _, _, a, _ in (items if split == "train" else
                                            READERS[name](ann, "train")[0])]
      ans2label, drop = answer_vocabulary(config, train_answers)
      if drop and split == "train":
        keep = [it for it in items if it[2] in ans2label]
        if len(keep) < len(items):
          warnings.warn(f"{name} train: {len(items) - len(keep)} of {len(items)} questions have an "
                        f"answer outside the {len(ans2label)} most frequent "
                        f"(data.top_answers) and are dropped.", stacklevel=2)
        items = keep
    tok = _tokenizer(config.get("bert_vocab"))
    rows = [(_row(store, name, v, f"{file} (question {q!r})"), q, a, t) for v, q, a, t in items]
    return videoqa.qa_split(
        store, store.ids, rows, split, tok, ans2label=ans2label,
        num_frames=int(config.get("num_frames", 16)), max_words=int(config.get("max_words", 40)),
        answer_words=int(config.get("answer_words", 24 if name == "nextqa" else 8)),
        train_sampling=config.get("train_sampling", "uniform"), candidates=cands,
        info={"vocab": tok.vocab, "vocab_size": len(tok.vocab),
              "qtype_groups": qa.NEXTQA_GROUPS if name == "nextqa" else None})
  build.__doc__ = f"{name}: the QA layout from its annotation files and prepared videos."
  return build


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str) -> BertTokenizer:
  return BertTokenizer.from_file(path)


for _name in READERS:
  data.register(_name)(_builder(_name))

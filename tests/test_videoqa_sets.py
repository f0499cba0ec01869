"""Video-QA benchmarks read from tiny fakes written in their official layouts (NExT-QA, MSVD-QA,
MSRVTT-QA, ActivityNet-QA), videos through `prep.video`; BERT's WordPiece tokenizer by hand."""
from __future__ import annotations

import collections
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from ml_pipelines import data
from ml_pipelines.data import video as video_lib
from ml_pipelines.data import videoqa
from ml_pipelines.data.videoqa_sets import ACTIVITYNET_TYPES
from ml_pipelines.prep import video as prep
from ml_pipelines.tasks.videoqa import detokenize, special_ids
from models.bert_tokenizer import BertTokenizer, basic_tokens

WORDS = ("what is the man doing why did boy run how many are there who jumps a ball cat "
         "because he fell two playing one where park when night ? dog".split())
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "##s", "##ing", *dict.fromkeys(WORDS)]


def test_wordpiece_tokenizer_by_hand():
  tok = BertTokenizer(VOCAB)
  assert basic_tokens("  Why did the Boy run?\tcafé ") == ["why", "did", "the", "boy", "run", "?",
                                                           "cafe"]
  ids, mask = tok(["Dogs jumps, DOGS", "what is the man doing ? why did boy run"], 8)
  i = {w: k for k, w in enumerate(VOCAB)}
  np.testing.assert_array_equal(ids[0], [2, i["dog"], 4, i["jumps"], 1, i["dog"], 4, 3])
  assert mask[0].all() and ids[1][-1] == 3 and mask[1].sum() == 8  # truncated, [SEP] kept
  assert detokenize(ids[0][1:], VOCAB) == "dogs jumps [UNK] dogs"
  assert special_ids(VOCAB) == (0, 2, 3)


def _frames(tag: int, n: int = 4) -> list[np.ndarray]:
  return [np.full((6, 6, 3), 10 * tag + t, np.uint8) for t in range(n)]


def _write_video(folder: str, tag: int) -> None:
  os.makedirs(folder)
  for t, f in enumerate(_frames(tag)):
    Image.fromarray(f).save(os.path.join(folder, f"{t:03d}.png"))


QUESTIONS = [("what is the man doing", "playing"), ("why did the boy run", "because he fell"),
             ("how many dogs are there", "two"), ("who jumps", "cat"),
             ("what is the man doing", "playing")]


def _layout(root: str, name: str) -> dict[str, str]:
  """A fake of `name` in its official layout; returns the videos' folder names by tag."""
  ann, vids = os.path.join(root, "ann"), os.path.join(root, "videos")
  os.makedirs(ann)
  names = {}
  if name == "nextqa":
    vid_map = {"1001": "0000/4010", "1002": "0001/4020"}
    for k, (video, path) in enumerate(vid_map.items()):
      _write_video(os.path.join(vids, path), k)
      names[video] = os.path.basename(path)
    with open(os.path.join(ann, "map_vid_vidorID.json"), "w") as f:
      json.dump(vid_map, f)
    for split in ("train", "val"):
      with open(os.path.join(ann, f"{split}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow("video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4"
                   .split(","))
        for k, ((q, a), code) in enumerate(zip(QUESTIONS, ("DO", "CW", "DC", "TP", "TN"))):
          choices = ["one", "ball", "night", "park", a]
          choices[4], choices[k % 5] = choices[k % 5], a
          w.writerow([1001 + k % 2, 40, 6, 6, q, k % 5, k, code, *choices])
    return {k: names[v] for k, v in enumerate(vid_map)}
  if name in ("msrvtt_qa", "msvd_qa"):
    files = {0: "video0", 1: "video1"} if name == "msrvtt_qa" else {0: "-ab_1_5", 1: "cd_2_9"}
    if name == "msvd_qa":
      with open(os.path.join(ann, "youtube_mapping.txt"), "w") as f:
        f.write("-ab_1_5 vid0\ncd_2_9 vid1\n")
    for split in ("train", "test"):
      with open(os.path.join(ann, f"{split}_qa.json"), "w") as f:
        json.dump([{"answer": a, "id": k, "question": q + " ?", "video_id": k % 2}
                   for k, (q, a) in enumerate(QUESTIONS)], f)
  else:  # activitynet_qa
    files = {0: "v_abc", 1: "v_xyz"}
    for split in ("train", "test"):
      with open(os.path.join(ann, f"{split}_q.json"), "w") as f:
        json.dump([{"video_name": ["abc", "xyz"][k % 2], "question": q, "question_id": f"q{k}"}
                   for k, (q, _) in enumerate(QUESTIONS)], f)
      with open(os.path.join(ann, f"{split}_a.json"), "w") as f:
        json.dump([{"answer": a, "type": k, "question_id": f"q{k}"}
                   for k, (_, a) in enumerate(QUESTIONS)][::-1], f)
  for k, folder in files.items():
    _write_video(os.path.join(vids, folder), k)
  return files


def _config(root, **kw):
  with open(os.path.join(root, "vocab.txt"), "w") as f:
    f.write("\n".join(VOCAB) + "\n")
  return dict(data_dir=os.path.join(root, "prepared"), ann_dir=os.path.join(root, "ann"),
              bert_vocab=os.path.join(root, "vocab.txt"), num_frames=2, max_words=12, **kw)


@pytest.mark.parametrize("name", ["nextqa", "msrvtt_qa", "msvd_qa", "activitynet_qa"])
def test_builder_reads_the_official_layout(tmp_path, name):
  root = str(tmp_path)
  _layout(root, name)
  assert prep.prepare_videos(os.path.join(root, "videos"), os.path.join(root, "prepared"), fps=1,
                             size=6, source_fps=1) == 2
  config = _config(root)
  split = "val" if name == "nextqa" else "test"
  ds = data.get(name)(config, split)
  assert len(ds.source) == len(QUESTIONS)
  counts = collections.Counter(a for _, a in QUESTIONS)
  tok = BertTokenizer(VOCAB)
  for k, (q, a) in enumerate(QUESTIONS):
    ex = ds.eval_preprocess(dict(ds.source[k]))
    written = q + " ?" if name in ("msrvtt_qa", "msvd_qa") else q
    assert detokenize(ex["question"][1:], VOCAB) == written
    assert detokenize(ex["answer"][1:], VOCAB) == a and ds.info["answers"][k] == a
    np.testing.assert_array_equal(  # every frame kept at 1 fps; clips sample 2 of the 4
        ex["video"], np.stack(_frames(k % 2))[video_lib.uniform_indices(4, 2)])
    qtype = ds.info["qtypes"][ex["qtype"]]
    if name == "nextqa":
      assert ex["label"] == k % 5
      want = [2, *tok.encode(q), 3, *tok.encode(a), 3]  # [CLS] q [SEP] a [SEP]
      np.testing.assert_array_equal(ex["candidates"][k % 5][ex["candidates_mask"][k % 5]], want)
      assert qtype == ("DO", "CW", "DC", "TN", "TN")[k]  # TP scored as TN (NExT-QA eval_mc.py)
    else:
      order = sorted(counts, key=lambda x: (-counts[x], x))
      assert ex["label"] == order.index(a)
      first = q.split()[0]  # ALPRO's answer types: what / who / how / where / when
      assert qtype == (ACTIVITYNET_TYPES[k] if name == "activitynet_qa" else
                       first if first in ("what", "who", "how", "where", "when") else "other")
  if name == "nextqa":
    assert ds.info["qtype_groups"]["CW"] == "causal"


def test_bad_inputs_in_a_real_layout(tmp_path):
  root = str(tmp_path)
  _layout(root, "msrvtt_qa")
  prep.prepare_videos(os.path.join(root, "videos"), os.path.join(root, "prepared"), fps=1, size=6,
                      source_fps=1)
  config = _config(root)
  with pytest.warns(UserWarning, match="3 of 5 questions have an answer outside the 1 most"):
    ds = data.get("msrvtt_qa")(dict(config, top_answers=1), "train")
  assert ds.info["answers"] == ["playing", "playing"]
  with open(os.path.join(root, "ans2label.json"), "w") as f:
    json.dump({"playing": 0, "two": 1}, f)
  with pytest.raises(videoqa.AnswerVocabularyError, match="2 training answers are not in"):
    data.get("msrvtt_qa")(dict(config, ans2label=os.path.join(root, "ans2label.json")), "train")
  with pytest.warns(UserWarning, match="test: 4 of 5 questions are longer than data.max_words=6"):
    ds = data.get("msrvtt_qa")(dict(config, max_words=6), "test")
  assert ds.source[1]["question_mask"].all() and ds.source[1]["question"][-1] == 3
  with open(os.path.join(root, "ann", "test_qa.json"), "w") as f:
    json.dump([{"answer": "two", "id": 0, "question": "who jumps ?", "video_id": 7}], f)
  with pytest.raises(KeyError, match="names video 'video7', which is not among the 2 videos"):
    data.get("msrvtt_qa")(config, "test")


def _tiny(c):
  """The real config with towers small enough for a test (TimeSformer: the clip path)."""
  c.model.vision = dict(name="timesformer_b16", embed_dim=16, depth=1, num_heads=2, patch_size=3,
                        img_size=6, num_frames=2, drop_path=0.0)
  c.model.text = dict(name="bert_base", vocab_size=len(VOCAB), hidden_size=16, num_layers=2,
                      num_heads=2, fusion_layer=1, encoder_width=16, max_position=64)
  if "decoder" in c.model:
    c.model.decoder = dict(name="answer_decoder", vocab_size=len(VOCAB), hidden_size=16,
                           num_layers=1, num_heads=2, max_position=16)
  return c


@pytest.mark.parametrize("method,name", [("classifier", "nextqa"), ("mcg", "activitynet_qa")])
def test_real_configs_run_on_the_fake_layouts(tmp_path, method, name):
  import jax.numpy as jnp

  import models
  from configs.videoqa import classifier, mcg
  from ml_pipelines import tasks
  root = str(tmp_path)
  _layout(root, name)
  prep.prepare_videos(os.path.join(root, "videos"), os.path.join(root, "prepared"), fps=1, size=6,
                      source_fps=1)
  c = _tiny((classifier if method == "classifier" else mcg).get_config(name))
  c.data.update(_config(root))
  ds = data.get(c.data.name)(c.data, "train")
  exs = [ds.eval_preprocess(dict(ds.source[i])) for i in range(len(ds.source))]
  batch = {k: jnp.asarray(np.stack([e[k] for e in exs])) for k in exs[0]}
  model = models.build(c.model, seed=0)
  task = tasks.get(c.task.name)(c)
  if method == "mcg":
    loss, aux = task.loss(model, batch, None, None, 0)
    assert special_ids(ds.info["vocab"]) == (0, 2, 3)  # BERT-style vocabulary: not 0, 1, 2
    assert np.isfinite(float(loss)) and float(aux["metrics"]["answer_ce"]) > 0
    return
  seen = []

  def recorded(*inputs):  # the model, remembering what it was given and what it answered
    seen.append((inputs, model(*inputs)))
    return seen[-1][1]
  loss, _ = task.loss(recorded, batch, None, None, 0)
  (inputs, logits), = seen
  assert inputs[2] is batch["candidates"] and inputs[3] is batch["candidates_mask"]
  logits = np.asarray(logits)
  assert logits.shape == (5, 5)
  labels = np.asarray(batch["label"])
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert float(loss) == pytest.approx(-logp[np.arange(5), labels].mean(), rel=1e-4)

"""Video QA data, and the classification baseline and MCG run end to end by the trainer."""
from __future__ import annotations

import collections
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from configs.videoqa import classifier, mcg
from ml_pipelines import data, train
from ml_pipelines.data import moving_shapes, videoqa
from ml_pipelines.data import video as video_lib
from ml_pipelines.evaluators import qa
from ml_pipelines.tasks.videoqa import detokenize, special_ids


def _opts(**kw):
  return dict(dict(train_size=3, test_size=2, num_frames=2), **kw)


def test_moving_shapes_qa_layout_and_answer_vocabulary():
  ds = data.get("moving_shapes_qa")(_opts(), "test")
  vids = [moving_shapes.video(0, "test", i) for i in range(2)]
  pairs = [qa_pair for v in vids for qa_pair in v["qa"]]
  train_answers = [a for i in range(3) for _, a in moving_shapes.video(0, "train", i)["qa"]]
  counts = collections.Counter(train_answers)
  ans2label = ds.info["ans2label"]
  assert list(ans2label) == sorted(counts, key=lambda a: (-counts[a], a))
  for i, (q, a) in enumerate(pairs):
    ex = ds.eval_preprocess(dict(ds.source[i]))
    assert ds.info["answers"][i] == a
    assert ex["label"] == ans2label.get(a, -1)  # -1: not a training answer
    words = [moving_shapes.VOCAB[t] for t in ex["question"][ex["question_mask"]]]
    assert " ".join(words[1:-1]) == q and words[0] == "[CLS]" and words[-1] == "[SEP]"
    assert detokenize(ex["answer"][1:], moving_shapes.VOCAB) == a
    assert ds.info["qtypes"][ex["qtype"]] == ("action" if "doing" in q else "entity")
    np.testing.assert_array_equal(ex["video"], vids[0 if i < len(vids[0]["qa"]) else 1]["frames"]
                                  [video_lib.uniform_indices(8, 2)])


def test_bad_inputs():
  with pytest.warns(UserWarning, match="1 of 2 questions are longer than data.max_words=4"):
    videoqa.warn_long_questions(["what is it ?", "why ?"], 4, "train")
  with pytest.raises(videoqa.AnswerVocabularyError, match="1 training answers"):
    videoqa.answer_labels(["yes", "maybe"], {"yes": 0}, "train")
  np.testing.assert_array_equal(videoqa.answer_labels(["yes", "maybe"], {"yes": 0}, "test"),
                                [0, -1])
  with pytest.warns(UserWarning, match="truncated"):
    ds = data.get("moving_shapes_qa")(_opts(max_words=5), "test")
  assert ds.source[0]["question_mask"].all()
  frames = [np.zeros((2, 4, 4, 3), np.uint8)]
  with pytest.raises(ValueError, match="1 questions name a video that is not there"):
    videoqa.qa_split(frames, ["v0"], [(0, "q ?", "a", "t"), (1, "where ?", "a", "t")], "test",
                     moving_shapes.tokenize, ans2label={"a": 0}, num_frames=2, max_words=6,
                     answer_words=3)


def _eval_examples(c):
  ds = data.get(c.data.name)(c.data, c.data.eval_split)
  exs = [ds.eval_preprocess(dict(ds.source[i])) for i in range(len(ds.source))]
  return ds, {k: jnp.asarray(np.stack([e[k] for e in exs])) for k in exs[0]}


def _echo_dataset(name, change, base="moving_shapes_qa"):
  """Registers `name`: `base` whose evaluation examples go through `change(ds)`."""
  def build(config, split):
    ds = data.get(base)(config, split)
    return ds if split == "train" else change(ds)
  data.register(name)(build)


def _shrink(c):
  """One-layer towers: the tests check wiring, not capacity."""
  c.model.vision.update(depth=1)
  c.model.text.update(num_layers=2, fusion_layer=1)
  c.data.update(_opts())
  return c


def _run(c, tmp_path):
  c.total_steps, c.batch_size, c.eval_batch_size, c.eval_every = 1, 8, 8, 1
  c.checkpoint_every, c.log_every = 1, 1
  c.optimizer.update(learning_rate=0.0, warmup_steps=0, schedule="constant")  # keeps the init
  return train.train_and_evaluate(c, str(tmp_path))


def test_classifier_trains_and_scores_its_own_predictions(tmp_path):
  c = _shrink(classifier.get_config("moving_shapes"))
  ds, batch = _eval_examples(c)
  model = models.build(c.model, seed=c.seed)
  forward = nnx.jit(lambda m, b: m(b["video"], b["frame_mask"], b["question"], b["question_mask"]))
  pred = np.asarray(jnp.argmax(forward(model, batch), -1))
  labels = np.where(np.arange(len(pred)) % 2 == 0, pred, (pred + 1) % c.model.num_answers)

  def change(d):
    rows = video_lib._Rows(len(d.source), lambda i: {**d.source[i], "label": labels[i]})
    return dataclasses.replace(d, source=rows)
  _echo_dataset("moving_shapes_qa_echo_cls", change)
  c.data.name = "moving_shapes_qa_echo_cls"
  out = _run(c, tmp_path)
  want = qa.accuracy_by_type(np.arange(len(pred)) % 2 == 0,
                             np.asarray(ds.info["qtypes"])[np.asarray(batch["qtype"])])
  assert want["accuracy"] == pytest.approx(0.5, abs=0.1)
  for k, v in want.items():
    assert out[f"eval/{k}"] == pytest.approx(v)


def _brute_force_greedy(model, batch, steps, cls):
  """Greedy answers by re-running the whole prefix through the teacher-forced decoder."""
  fused = model.encoder.encode(batch["video"], batch["frame_mask"], batch["question"],
                               batch["question_mask"])[3]
  ids = jnp.full((batch["question"].shape[0], 1), cls, jnp.int32)
  for _ in range(steps):
    logits = model.decoder(ids, jnp.ones_like(ids, bool), fused, batch["question_mask"])
    ids = jnp.concatenate([ids, jnp.argmax(logits[:, -1], -1)[:, None].astype(jnp.int32)], 1)
  return ids[:, 1:]


# A vocabulary order where [PAD], [CLS], [SEP] are not 0, 1, 2 (as in BERT's 0, 101, 102).
PERM = ((np.arange(len(moving_shapes.VOCAB)) + 5) % len(moving_shapes.VOCAB)).astype(np.int32)
PERMUTED_VOCAB = [moving_shapes.VOCAB[i] for i in np.argsort(PERM)]


def _permuted(ds):
  """`ds` with every token id `i` replaced by `PERM[i]` and the vocabulary reordered to match."""
  def row(i):
    ex = ds.source[i]
    return {**ex, "question": PERM[ex["question"]], "answer": PERM[ex["answer"]]}
  return dataclasses.replace(ds, source=video_lib._Rows(len(ds.source), row),
                             info=dict(ds.info, vocab=PERMUTED_VOCAB))


def test_mcg_trains_and_scores_greedy_answers_by_exact_match(tmp_path):
  """Decoding starts from, stops at and pads with the ids the dataset's vocabulary gives."""
  assert special_ids(PERMUTED_VOCAB) == (5, 6, 7)
  c = _shrink(mcg.get_config("moving_shapes"))
  data.register("moving_shapes_qa_permuted")(
      lambda config, split: _permuted(data.get("moving_shapes_qa")(config, split)))
  c.data.name = "moving_shapes_qa_permuted"
  ds, batch = _eval_examples(c)
  model = models.build(c.model, seed=c.seed)
  tokens = np.asarray(nnx.jit(_brute_force_greedy, static_argnums=(2, 3))(
      model, batch, batch["answer"].shape[1] - 1, 6))
  texts = [detokenize(t, PERMUTED_VOCAB) for t in tokens]
  answers = [t if i % 2 == 0 else t + " x" for i, t in enumerate(texts)]  # half right

  def change(d):
    return dataclasses.replace(d, info=dict(d.info, answers=answers))
  _echo_dataset("moving_shapes_qa_echo_gen", change, base="moving_shapes_qa_permuted")
  c.data.name = "moving_shapes_qa_echo_gen"
  out = _run(c, tmp_path)
  want = qa.accuracy_by_type(np.arange(len(texts)) % 2 == 0,
                             np.asarray(ds.info["qtypes"])[np.asarray(batch["qtype"])])
  for k, v in want.items():
    assert out[f"eval/{k}"] == pytest.approx(v)


def test_classification_loss_skips_unseen_answers_and_mcg_temperature_is_clamped():
  from ml_pipelines.tasks.videoqa import VideoQAClassification
  c = classifier.get_config("moving_shapes")
  logits = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  labels = np.array([0, 2, -1, 1], np.int32)
  loss, _ = VideoQAClassification(c).loss(lambda *a: jnp.asarray(logits), {
      "video": None, "frame_mask": None, "question": None, "question_mask": None,
      "label": jnp.asarray(labels)}, None, None, 0)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert float(loss) == pytest.approx(-np.mean(logp[[0, 1, 3], labels[[0, 1, 3]]]), rel=1e-5)
  m = _shrink(mcg.get_config("moving_shapes"))
  model = models.build(dict(m.model, temp=2.0), seed=0)
  assert float(model.temperature()) == 0.5
  model.temp[...] = jnp.asarray(1e-5)
  assert float(model.temperature()) == pytest.approx(0.001)

"""Multiple-choice video QA (NExT-QA style): the loss and NExT-QA's per-type accuracy against NumPy
on rigged logits, the `moving_shapes_mcqa` layout, and the model scoring each candidate alone."""
from __future__ import annotations

import collections

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from configs.videoqa import classifier
from ml_pipelines import data
from ml_pipelines.data import moving_shapes, videoqa
from ml_pipelines.evaluators import qa
from ml_pipelines.tasks.videoqa import VideoQAMultipleChoice


def test_loss_and_nextqa_accuracy_against_numpy_on_rigged_logits():
  rng = np.random.default_rng(0)
  codes = np.array(["CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO"] * 3)
  labels = rng.integers(0, 5, len(codes)).astype(np.int32)
  logits = rng.normal(size=(len(codes), 5)).astype(np.float32)
  logits[np.arange(0, len(codes), 3), labels[::3]] += 10.0  # every third question right for sure
  c = classifier.get_config("moving_shapes_mc")
  loss, aux = VideoQAMultipleChoice(c).loss(
      lambda *a: jnp.asarray(logits), {"video": None, "frame_mask": None, "candidates": None,
                                       "candidates_mask": None, "label": jnp.asarray(labels)},
      None, None, 0)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert float(loss) == pytest.approx(-logp[np.arange(len(codes)), labels].mean(), rel=1e-5)
  correct = logits.argmax(-1) == labels
  assert float(aux["metrics"]["accuracy"]) == pytest.approx(correct.mean())

  # NExT-QA eval_mc.py: TP counted as TN; groups are the codes' first letters C / T / D.
  merged = np.where(codes == "TP", "TN", codes)
  got = qa.accuracy_by_type(correct, merged, qa.NEXTQA_GROUPS)
  want = {"accuracy": correct.mean()}
  for code in set(merged):
    want[f"accuracy/{code}"] = correct[merged == code].mean()
  for letter, name in (("C", "causal"), ("T", "temporal"), ("D", "descriptive")):
    want[f"accuracy/{name}"] = correct[np.char.startswith(merged, letter)].mean()
  assert got.keys() == want.keys()
  for k in want:
    assert got[k] == pytest.approx(want[k]), k


def test_moving_shapes_mcqa_layout():
  opts = dict(train_size=2, test_size=3, num_frames=2)
  ds = data.get("moving_shapes_mcqa")(opts, "test")
  again = data.get("moving_shapes_mcqa")(opts, "test")
  vocab = moving_shapes.VOCAB
  items = [qa_pair for i in range(3) for qa_pair in moving_shapes.video(0, "test", i)["qa"]]
  positions = collections.Counter()
  for i, (q, a) in enumerate(items):
    ex = ds.source[i]
    np.testing.assert_array_equal(ex["candidates"], again.source[i]["candidates"])
    texts = [" ".join(vocab[t] for t in ids[m]) for ids, m in
             zip(ex["candidates"], ex["candidates_mask"])]
    assert all(t.startswith(f"[CLS] {q} [SEP] ") and t.endswith(" [SEP]") for t in texts)
    choices = [t[len(f"[CLS] {q} [SEP] "):-len(" [SEP]")] for t in texts]
    assert len(set(choices)) == 5 and choices[ex["label"]] == a
    pool = videoqa.MS_ACTIONS if "doing" in q else videoqa.MS_ENTITIES
    assert set(choices) <= set(pool)
    positions[int(ex["label"])] += 1
  assert len(positions) > 1  # the answer is not always in the same place


def test_model_scores_each_candidate_alone():
  c = classifier.get_config("moving_shapes_mc")
  c.model.vision.update(depth=1)
  c.model.text.update(num_layers=2, fusion_layer=1)
  c.data.update(train_size=2, test_size=2, num_frames=2)
  ds = data.get(c.data.name)(c.data, "test")
  exs = [ds.eval_preprocess(dict(ds.source[i])) for i in range(len(ds.source))]
  batch = {k: jnp.asarray(np.stack([e[k] for e in exs])) for k in exs[0]}
  model = models.build(c.model, seed=c.seed)
  model.eval()

  @nnx.jit
  def scores(m, b):
    both = m(b["video"], b["frame_mask"], b["candidates"], b["candidates_mask"])
    alone = m(b["video"], b["frame_mask"], b["candidates"][:, 3:4], b["candidates_mask"][:, 3:4])
    return both, alone[:, 0], VideoQAMultipleChoice.predictions(m, b)["prediction"]
  both, alone, pred = scores(model, batch)  # candidate 3 scored alone = its score among all five
  np.testing.assert_allclose(np.asarray(both)[:, 3], np.asarray(alone), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(pred), np.asarray(both).argmax(-1))


def test_held_out_answers_leave_training_and_are_typed_in_test():
  opts = dict(train_size=40, test_size=40, num_frames=2, held_out=("red square", "blue circle"))
  train_ds = data.get("moving_shapes_qa")(opts, "train")
  test_ds = data.get("moving_shapes_qa")(opts, "test")
  train_pairs = [p for i in range(40) for p in moving_shapes.video(0, "train", i)["qa"]]
  test_pairs = [p for i in range(40) for p in moving_shapes.video(0, "test", i)["qa"]]
  assert train_ds.info["answers"] == [a for _, a in train_pairs if a not in opts["held_out"]]
  assert not set(opts["held_out"]) & set(train_ds.info["ans2label"])
  held = [k for k, (_, a) in enumerate(test_pairs) if a in opts["held_out"]]
  assert held and test_ds.info["answers"] == [a for _, a in test_pairs]
  types = np.asarray(test_ds.info["qtypes"])[[test_ds.source[k]["qtype"] for k in range(
      len(test_pairs))]]
  assert set(np.flatnonzero(types == "held-out")) == set(held)
  assert all(test_ds.source[k]["label"] == -1 for k in held)  # no class for a held-out answer

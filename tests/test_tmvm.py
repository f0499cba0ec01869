"""TMVM: the K = 1 uniform-mask reduction against CLIP4Clip's meanP similarity and loss (fixture
from the official code), the diversity losses against NumPy, retrieval ranks against brute force
with ties and against CLIP4Clip's `compute_metrics`, and training through the trainer."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

import models
from losses import video as vl
from ml_pipelines import train
from ml_pipelines.evaluators import video_retrieval
from ml_pipelines.trainer import config as config_lib
from models import tmvm

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "video")


def test_k1_uniform_masks_equal_clip4clip_meanp():
  f = np.load(os.path.join(FIX, "clip4clip.npz"))
  frames, mask = f["frames"], f["video_mask"].astype(bool)
  b, t, d = frames.shape
  others = np.random.default_rng(0).normal(size=(b, t, 3, d)).astype(np.float32)
  x = jnp.asarray(np.concatenate([frames[:, :, None], others], 2))  # class token first
  logits = jnp.broadcast_to(jnp.where(jnp.arange(4) == 0, 0.0, -jnp.inf)[None, None, :, None],
                            (b, t, 4, 1))
  protos, attn = tmvm.prototype_pool(x, logits, jnp.asarray(mask))
  np.testing.assert_allclose(protos[:, 0], vl.mean_pooled(jnp.asarray(frames), jnp.asarray(mask)),
                             atol=1e-6)
  text = vl.l2_normalise(jnp.asarray(f["text"][:, 0]))
  sim = vl.prototype_similarity(text, protos, 1 / 0.07)
  np.testing.assert_allclose(sim, f["logits"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(vl.symmetric_cross_entropy(sim), f["loss"], rtol=1e-5)
  np.testing.assert_allclose(attn.sum(1), 1.0, atol=1e-6)


def _tiny_tmvm(**kw):
  return models.build(dict(
      name="tmvm", vision=dict(name="vit_b16", embed_dim=16, depth=1, num_heads=2, patch_size=8,
                               img_size=16, num_classes=None, drop_path=0.0),
      text=dict(name="bert_base", vocab_size=30, hidden_size=16, num_layers=1, num_heads=2,
                max_position=8), embed_dim=8, **kw))


def test_model_uniform_masks_are_mean_pooled_class_tokens():
  model = _tiny_tmvm(num_prototypes=1, uniform_masks=True)
  video = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 3, 16, 16, 3)), jnp.uint8)
  fm = jnp.array([[True, True, False], [True, True, True]])
  protos, _ = model.prototypes(video, fm)
  cls = model.tokens(video)[:, :, 0]
  np.testing.assert_allclose(protos[:, 0], vl.mean_pooled(cls, fm), atol=1e-6)
  protos4, attn = _tiny_tmvm(num_prototypes=4).prototypes(video, fm)
  assert protos4.shape == (2, 4, 8) and float(attn[0, 2 * 5:].max()) == 0.0  # padded frame


def test_diversity_losses_match_numpy():
  a = np.random.default_rng(0).dirichlet(np.ones(6), size=(3, 4)).transpose(0, 2, 1)  # [B, N, K]
  want = -np.mean([sum(np.var(a[b, n]) for n in range(6)) for b in range(3)])
  np.testing.assert_allclose(vl.prototype_variance(jnp.asarray(a)), want, rtol=1e-5)
  pairs = [a[b, :, i] @ a[b, :, j] for b in range(3) for i in range(4) for j in range(4) if i != j]
  np.testing.assert_allclose(vl.prototype_overlap(jnp.asarray(a)), np.sum(pairs) / 3 / 12,
                             rtol=1e-5)
  distinct = np.eye(4)[None]  # prototype k on token k
  np.testing.assert_allclose(vl.prototype_variance(jnp.asarray(distinct)), -(1 - 1 / 4), rtol=1e-6)
  same = np.full((1, 4, 4), 0.25)
  assert float(vl.prototype_variance(jnp.asarray(same))) == 0.0


def _brute_rank(scores, relevant):
  best = None
  for c in np.flatnonzero(relevant):
    r = 1 + sum(1 for j in range(len(scores))
                if scores[j] > scores[c] or (scores[j] == scores[c] and j < c))
    best = r if best is None else min(best, r)
  return best


def test_ranks_brute_force_with_ties():
  rng = np.random.default_rng(0)
  sim = rng.integers(0, 4, (30, 9)).astype(float)  # many ties
  video_index = np.concatenate([np.arange(9), rng.integers(0, 9, 21)])
  m = video_retrieval.text_video_metrics(sim, video_index)
  rel = np.arange(9)[None] == video_index[:, None]
  t2v = np.array([_brute_rank(sim[q], rel[q]) for q in range(30)])
  v2t = np.array([_brute_rank(sim[:, v], rel[:, v]) for v in range(9)])
  for k in (1, 5, 10):
    assert m[f"t2v_R@{k}"] == pytest.approx(100 * np.mean(t2v <= k))
    assert m[f"v2t_R@{k}"] == pytest.approx(100 * np.mean(v2t <= k))
  assert m["t2v_MdR"] == np.median(t2v) and m["v2t_MnR"] == pytest.approx(np.mean(v2t))


def test_ranks_match_clip4clip_compute_metrics():
  f = np.load(os.path.join(FIX, "clip4clip.npz"))
  m = video_retrieval.text_video_metrics(f["metric_sim"], np.arange(40))
  got = [m["t2v_R@1"], m["t2v_R@5"], m["t2v_R@10"], m["t2v_MdR"], m["t2v_MnR"]]
  np.testing.assert_allclose(got, f["metrics"], rtol=1e-12)


def _tiny_config(arg, **data):
  c = config_lib.load(f"configs/video/tmvm.py:{arg}")
  c.total_steps, c.batch_size, c.eval_batch_size = 2, 8, 8
  c.log_every, c.eval_every, c.checkpoint_every = 1, 2, 2
  c.optimizer.warmup_steps = 0
  c.model.vision.update(depth=1, embed_dim=32, num_heads=2, patch_size=16)
  c.model.text.update(num_layers=1, hidden_size=32, num_heads=2)
  c.model.embed_dim = 16
  c.data.update(data)
  return c


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_trains_on_moving_shapes(tmp_path):
  c = _tiny_config("moving_shapes,4,1.0", train_size=3, test_size=5, num_frames=4, size=16)
  c.model.vision.img_size = 16  # 8 training pairs: one batch
  c.optimizer.update(name="sgd", learning_rate=0.01, momentum=0.0, weight_decay=0.0)
  train.train_and_evaluate(c, str(tmp_path))
  rows = _rows(str(tmp_path))
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert losses[1] < losses[0]  # one batch = the whole (8-pair) training split
  ev = [r for r in rows if "eval/t2v_R@1" in r][-1]
  assert 0 < ev["eval/t2v_R@10"] and ev["eval/v2t_MnR"] <= 5



def test_real_msrvtt_config_reads_the_prepared_layout(tmp_path):
  """The real MSR-VTT config (CLIP4Clip meanP: 12 frames with padding, CLIP BPE, 32 words, CLIP
  towers) on a fake prepared layout, without training: the builder's clips keep every real frame
  and pad the rest, captions are CLIP's tokens, and the task's loss on that batch is the symmetric
  cross-entropy of the model's own embeddings (NumPy)."""
  import jax
  from ml_pipelines import data, tasks
  from ml_pipelines.prep import video as prep_video
  from models.clip_tokenizer import tokenize
  from test_video_data import _fake_msrvtt
  from test_video_towers import CLIP_TOWERS
  vids, ann = _fake_msrvtt(tmp_path)
  prep_video.prepare_videos(str(vids), str(tmp_path / "rec"), fps=1.0, size=32, source_fps=2.0)
  c = config_lib.load("configs/video/tmvm.py:msrvtt,meanp")
  c.data.update(data_dir=str(tmp_path / "rec"), ann_dir=str(ann))
  ds = data.get(c.data.name)(c.data.to_dict(), c.data.train_split)
  rows = [ds.eval_preprocess(ds.source[i]) for i in range(len(ds.source))]
  batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in ("video", "frame_mask", "text",
                                                                     "text_mask")}
  assert batch["video"].shape == (3, 12, 32, 32, 3)
  assert np.asarray(batch["frame_mask"]).sum(1).tolist() == [3, 3, 2]  # 6, 4 frames: 2 -> 1 fps
  assert (np.asarray(batch["video"])[2, 2:] == 0).all()
  np.testing.assert_array_equal(batch["text"][0], tokenize(["a man sings"], 32)[0])
  block = dict(c.model.to_dict(), vision=CLIP_TOWERS["vision"], embed_dim=16,
               text=dict(CLIP_TOWERS["text"], vocab_size=49408, context_length=32))
  model = models.build(block)
  loss, _ = tasks.get(c.task.name)(c).loss(model, batch, jax.random.key(0), None, 0)
  t = np.asarray(model.encode_text(batch["text"], batch["text_mask"]))
  frames = tmvm.normalise_frames(batch["video"].reshape(-1, 32, 32, 3))
  f = np.asarray(model.vision.tokens(frames))
  f = f[:, 0].reshape(3, 12, -1)
  f = f / np.linalg.norm(f, axis=-1, keepdims=True)
  v = (f * np.asarray(batch["frame_mask"])[..., None]).sum(1)
  v = v / np.linalg.norm(v, axis=-1, keepdims=True)
  sim = np.exp(np.log(1 / 0.07)) * t @ v.T
  ce = lambda s: -np.mean(np.diag(s - np.log(np.exp(s).sum(1, keepdims=True))))  # noqa: E731
  np.testing.assert_allclose(float(loss), (ce(sim) + ce(sim.T)) / 2, rtol=1e-4)


def test_demo_ceiling_is_the_oracle_expectation():
  """The TMVM demo's ceiling row: R@1/5 of an oracle that scores 1 every video holding the
  caption's object, averaged over random tie-breaking (gallery orders), equals the closed form."""
  import argparse
  from ml_pipelines import data
  from ml_pipelines.evaluators import video_retrieval
  from ml_pipelines.jobs import tmvm_demo
  args = argparse.Namespace(steps=1, batch_size=2, lr=1e-3, objects="2,3", frames=4,
                            train_size=2, test_size=12, depth=1)
  c = tmvm_demo.config_for("k4", args)
  want = tmvm_demo.ceiling(c)
  q = data.get(c.data.name)(c.data, "test_text").source
  texts = [tuple(q[i]["text"].tolist()) for i in range(len(q))]
  vid = np.array([int(q[i]["video_index"]) for i in range(len(q))])
  has = np.array([[any(t == texts[j] for j in np.flatnonzero(vid == v)) for v in range(12)]
                  for t in texts], np.float64)
  rng = np.random.default_rng(0)
  got = []
  for _ in range(3000):
    perm, rows = rng.permutation(12), rng.permutation(len(vid))  # orders decide the ties
    got.append(video_retrieval.text_video_metrics(has[rows][:, perm],
                                                  np.argsort(perm)[vid[rows]]))
  for k in want:
    assert abs(np.mean([g[k] for g in got]) - want[k]) < 1.5, k

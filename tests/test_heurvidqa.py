"""HeurVidQA: prompt features, heuristics and their injection against NumPy; the frozen prompter
through the trainer (no gradient, no optimizer state, loaded by `init_from`), and the loss falls."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from configs.videoqa import heurvidqa as config_lib
from losses import heurvidqa as hl
from ml_pipelines import data, train
from ml_pipelines.data import moving_shapes
from ml_pipelines.tasks import heurvidqa as task_lib
from ml_pipelines.trainer.init_from import flat_paths
from models import heurvidqa as hm


def _tiny(inject="both"):
  c = config_lib.get_config(f"moving_shapes,{inject}")
  c.model.vision.update(depth=1)
  c.model.text.update(num_layers=2, fusion_layer=1)
  c.model.prompter.vision.update(depth=1)
  c.model.prompter.text.update(num_layers=1)
  c.data.update(train_size=3, test_size=2, num_frames=2)
  return c


def _batch(c, n=4):
  ds = data.get(c.data.name)(c.data, "test")
  exs = [ds.eval_preprocess(dict(ds.source[i])) for i in range(n)]
  batch = {k: jnp.asarray(np.stack([e[k] for e in exs])) for k in exs[0]}
  prompts = task_lib.HeurVidQA(c).constants(None)
  if prompts:
    batch["prompts"] = jax.tree_util.tree_map(jnp.asarray, prompts["prompts"])
  return batch


def test_prompts_are_template_major_and_their_features_template_averages():
  c = _tiny()
  words, templates = ("red circle", "blue square", "white triangle"), ("a {} moves", "the {}")
  tokens = task_lib.prompt_tokens(words, templates, task_lib.tokenizer("moving_shapes", 8))
  for t, template in enumerate(templates):
    for e, word in enumerate(words):
      ids, _ = moving_shapes.tokenize([template.format(word)], 8)
      np.testing.assert_array_equal(tokens["ids"][t, e], ids[0])
  prompter = models.build(c.model.prompter, seed=0)
  for path, var in nnx.iter_graph(prompter.text):  # texts that differ more than at init
    if isinstance(var, nnx.Param) and path[-1] in ("kernel", "embedding"):
      var[...] = 30 * var[...]
  ids, mask = jnp.asarray(tokens["ids"]), jnp.asarray(tokens["mask"])
  got = np.asarray(nnx.jit(hm.prompt_features)(prompter, ids, mask))
  # Every prompt encoded alone (in a shuffled batch), then the mean over templates in NumPy.
  order = np.random.default_rng(0).permutation(len(words) * len(templates))
  flat = np.asarray(nnx.jit(lambda m, i, k: m.encode_text(i, k))(
      prompter, ids.reshape(-1, 8)[order], mask.reshape(-1, 8)[order]))
  each = np.empty_like(flat)
  each[order] = flat
  want = each.reshape(len(templates), len(words), -1).mean(axis=0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.linalg.norm(want, axis=-1).max() < 0.995  # averaged, not re-normalised


def test_scores_top_k_and_heuristic_tokens_against_numpy():
  c = _tiny()
  prompter = models.build(c.model.prompter, seed=0)
  batch = _batch(c, n=3)
  rng = np.random.default_rng(0)
  prompts = rng.normal(size=(6, 64)).astype(np.float32)
  v, logits = nnx.jit(lambda m, video, mask: (
      m.prototypes(video, mask)[0][:, 0], hm.prompter_logits(m, video, mask, prompts)))(
          prompter, batch["video"], batch["frame_mask"])
  v, temp = np.asarray(v), float(prompter.temp[...])
  np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(logits), v @ prompts.T / temp, rtol=1e-4, atol=1e-5)
  h = rng.dirichlet(np.ones(6), size=3).astype(np.float32)
  weights, index = hm.top_k_renormalise(jnp.asarray(h), 2)
  want_index = np.argsort(-h, axis=-1)[:, :2]
  np.testing.assert_array_equal(np.asarray(index), want_index)
  want_w = np.take_along_axis(h, want_index, -1)
  want_w /= want_w.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(weights), want_w, rtol=1e-6)
  proj = nnx.Linear(64, 5, rngs=nnx.Rngs(0))
  tokens = np.asarray(hm.heuristic_tokens(weights, index, jnp.asarray(prompts), proj))
  kernel, bias = np.asarray(proj.kernel[...]), np.asarray(proj.bias[...])
  for b in range(3):
    for i in range(2):
      want = (want_w[b, i] * prompts[want_index[b, i]]) @ kernel + bias
      np.testing.assert_allclose(tokens[b, i], want, rtol=1e-5, atol=1e-5)


def test_heuristic_kl_against_numpy_skips_uncertain_clips():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 6)).astype(np.float32)
  h = np.array([[0.7, 0.1, 0.1, 0.05, 0.05, 0.0],
                [1 / 6] * 6,  # best heuristic below 0.2: ignored
                [0.0, 0.5, 0.3, 0.0, 0.2, 0.0]], np.float32)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  kl = [sum(p * (np.log(p) - lq) for p, lq in zip(row, lrow) if p > 0)
        for row, lrow in zip(h, logp)]
  got = float(hl.heuristic_kl(jnp.asarray(h), jnp.asarray(logits), 0.2))
  np.testing.assert_allclose(got, (kl[0] + kl[2]) / 2, rtol=1e-5)
  assert float(hl.heuristic_kl(jnp.asarray(h[1:2]), jnp.asarray(logits[1:2]), 0.2)) == 0.0


@nnx.jit
def _forwards(model, batch):
  """The forward pass without and with the input injection (top 3), and what the injection is
  made of: video tokens, question states, prompt features and the prompter's clip features."""
  args = (batch["video"], batch["frame_mask"], batch["question"], batch["question_mask"])
  off = model(*args, {}, inject_input=False, top_k=3)
  on = model(*args, batch["prompts"], inject_input=True, top_k=3)
  v, vmask = model.encoder.video_tokens(batch["video"], batch["frame_mask"])
  q = model.encoder.text(batch["question"], batch["question_mask"])
  feats = {k: hm.prompt_features(model.prompter, p["ids"], p["mask"])
           for k, p in batch["prompts"].items()}
  clip = model.prompter.prototypes(batch["video"], batch["frame_mask"])[0][:, 0]
  return off, on, (v, vmask, q, feats, clip)


def test_injection_none_is_alpro_classifier_and_input_appends_the_heuristic_tokens():
  c = _tiny()
  model = models.build(c.model, seed=0)
  batch = _batch(c)
  off, on, (v, vmask, q, feats, clip) = _forwards(model, batch)
  assert set(off) == {"logits"}
  cls_model = models.build({k: v for k, v in c.model.to_dict().items() if k != "prompter"}
                           | {"name": "videoqa_classifier"}, seed=0)
  np.testing.assert_allclose(np.asarray(off["logits"]), np.asarray(nnx.jit(
      lambda m, b: m(b["video"], b["frame_mask"], b["question"], b["question_mask"]))(
          cls_model, batch)), rtol=1e-5, atol=1e-6)
  # By hand: the prompter's softmax over its scaled similarities, the top 3 of each kind as
  # tokens after the question's hidden states, fused, the head on [CLS].
  q, qmask = np.asarray(q), np.asarray(batch["question_mask"])
  for kind in ("entity", "action"):
    f = np.asarray(feats[kind])
    s = np.asarray(clip) @ f.T / float(model.prompter.temp[...])
    h = np.exp(s - s.max(-1, keepdims=True))
    h /= h.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(on[f"h_{kind}"]), h, rtol=1e-4, atol=1e-6)
    top = np.argsort(-h, axis=-1)[:, :3]
    w = np.take_along_axis(h, top, -1)
    w /= w.sum(-1, keepdims=True)
    proj = getattr(model, f"{kind}_proj")
    tokens = (w[..., None] * f[top]) @ np.asarray(proj.kernel[...]) + np.asarray(proj.bias[...])
    q = np.concatenate([q, tokens], axis=1)
    qmask = np.concatenate([qmask, np.ones(tokens.shape[:2], bool)], axis=1)
  want = nnx.jit(lambda m, q, qm, v, vm: m.head(m.encoder.text.fuse(q, qm, v, vm)[:, 0]))(
      model, jnp.asarray(q), jnp.asarray(qmask), v, vmask)
  np.testing.assert_allclose(np.asarray(on["logits"]), np.asarray(want), rtol=1e-4, atol=1e-5)
  assert not np.allclose(np.asarray(on["logits"]), np.asarray(off["logits"]), atol=1e-4)


def _prompter_file(c, path):
  """A prompter's own checkpoint (keys are its paths) from another seed, as an .npz."""
  prompter = models.build(c.model.prompter, seed=7)
  arrays = {k: np.asarray(v) for k, v in flat_paths(
      nnx.to_pure_dict(nnx.state(prompter, nnx.Param))).items()}
  np.savez(path, **arrays)
  return arrays


def test_frozen_prompter_loads_from_init_from_gets_no_gradient_and_the_loss_falls(tmp_path):
  c = _tiny("both")
  c.model.vision.update(embed_dim=64)  # narrower towers: a cheaper step
  c.model.text.update(hidden_size=64, encoder_width=64)
  c.model.prompter.vision.update(embed_dim=48)
  c.model.prompter.text.update(hidden_size=48)
  c.total_steps, c.batch_size, c.eval_batch_size, c.eval_every = 12, 8, 8, 0  # no evaluation
  c.checkpoint_every, c.log_every = 12, 1
  c.optimizer.update(learning_rate=3e-3, warmup_steps=0, schedule="constant")
  loaded = _prompter_file(c, str(tmp_path / "prompter.npz"))
  c.init_from.path = str(tmp_path / "prompter.npz")
  out = train.train_and_evaluate(c, str(tmp_path / "run"))
  state = out["state"]
  assert "prompter" not in state["params"] and "prompter" not in state["opt_state"].__repr__()
  frozen = flat_paths(state["frozen"])
  assert set(frozen) == {f"prompter/{k}" for k in loaded}
  for k, v in loaded.items():  # loaded by init_from and never moved
    np.testing.assert_array_equal(np.asarray(frozen[f"prompter/{k}"]), v, err_msg=k)
  # Adam's two moments for the trainable parameters only.
  trainable = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(state["params"]))
  moments = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(state["opt_state"])
                if np.ndim(x))
  assert moments == 2 * trainable
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f if "train/loss" in line]
  losses = [r["train/loss"] for r in rows]
  assert len(losses) == 12 and "train/heuristic_action" in rows[0]
  assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4]), losses  # batches of 8 of 9 questions


def test_a_trainable_prompter_or_a_bad_switch_is_refused():
  c = _tiny("input")
  c.optimizer.freeze = r"^prompter/(text|temp)"  # the video tower would train
  params = nnx.to_pure_dict(nnx.state(models.build(c.model, seed=0), nnx.Param))
  with pytest.raises(ValueError, match="prompter must stay frozen.*prompter/vision/"):
    task_lib.HeurVidQA(c).init_extra(None, None, params)
  with pytest.raises(ValueError, match="inject="):
    c = _tiny()
    c.task.heuristics.inject = "prompt"
    task_lib.HeurVidQA(c)
  assert task_lib.HeurVidQA(_tiny("none")).constants(None) is None


def test_a_clip_file_loads_into_a_tmvm_prompter_and_nothing_else():
  """`prompter_open_clip` (real-data configs): a tiny open_clip file (tests/fixtures/clip) fills
  every `prompter/` variable of a CLIP4Clip-meanP prompter, the QA towers are skipped."""
  from safetensors.numpy import load_file
  from models import convert
  from tests.test_video_towers import CLIP_FIX, CLIP_TOWERS
  sd = {k: v for k, v in load_file(CLIP_FIX).items() if not k.startswith("__")}
  c = _tiny()
  c.model.prompter = dict(name="tmvm", num_prototypes=1, uniform_masks=True, **CLIP_TOWERS)
  model = nnx.eval_shape(lambda: models.build(c.model, seed=0))
  ours = flat_paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  found = convert.match(ours, sd, convert.get("prompter_open_clip"), skip=r"^(?!prompter/)")
  assert not found.problems and len(found.arrays) == len(sd)
  assert set(found.arrays) == {p for p in ours if p.startswith("prompter/")}
  np.testing.assert_array_equal(found.arrays["prompter/logit_scale"], sd["logit_scale"])

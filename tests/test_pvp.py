"""PVP (models/pvp.py, losses/pvp.py) against the official code (Jinx630/Pseudo-Visual-Prompt).

Fixtures (tests/fixtures/pvp/) were made by tests/fixtures/pvp/make_fixtures.py: the official
`ranking_loss` and a tiny stage-2 `DenseCLIP` (official CLIP ModifiedResNet, prompts, adapters)
with random weights, its training branch (noise 0, eval mode) and its zero-shot test branch.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import models
from losses import pvp as pvp_losses
from models import convert

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pvp")
CLASSES = ("dog", "traffic_light", "cat")
TINY_CLIP = dict(name="clip_tiny_rn", embed_dim=16, image_size=64, vision_layers=(1, 1, 1, 1),
                 vision_width=2, vision_head_width=64, context_length=77, vocab_size=49408,
                 text_width=32, text_heads=2, text_layers=1)


def _close(got, want, tol=1e-5):
  got = np.asarray(got)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_ranking_loss_and_gradient_match_official():
  fx = np.load(os.path.join(FIXTURES, "ranking.npz"))
  loss, grad = jax.value_and_grad(pvp_losses.ranking_loss)(jnp.asarray(fx["scores"]),
                                                          jnp.asarray(fx["labels"]))
  _close(loss, fx["loss"])
  _close(grad, fx["grad"])


def _official_stage2():
  data = load_file(os.path.join(FIXTURES, "stage2.safetensors"))
  data = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in data.items()}
  rows = data.pop("__vocab_rows__")
  sd = {k.removeprefix("clip."): v for k, v in data.items() if k.startswith("clip.")}
  table = np.zeros((49408, sd["token_embedding.weight"].shape[1]), np.float32)
  table[rows] = sd["token_embedding.weight"]
  sd["token_embedding.weight"] = table
  model = nnx.eval_shape(lambda: models.build(
      "pvp", clip=TINY_CLIP, class_names=CLASSES, prompt_size=32, n_ctx=4, noise=0.0))
  convert.load_into(model.clip, sd, converter=convert.get("open_clip"))
  nchw = lambda x: jnp.asarray(x.transpose(0, 2, 3, 1))
  model.image_prompts = nnx.Param(nchw(data["image_prompt_learner.ctx"]))
  model.image_prompts_local = nnx.Param(nchw(data["image_prompt_learner.ctx_double"]))
  model.ctx = nnx.Param(jnp.asarray(data["text_prompt_learner.ctx"]))
  model.ctx_double = nnx.Param(jnp.asarray(data["text_prompt_learner.ctx_double"]))
  for ours, theirs in ((model.text_adapter, "text_ap"), (model.image_adapter, "image_ap")):
    ours.fc1.kernel = nnx.Param(jnp.asarray(data[f"{theirs}.fc.0.weight"].T))
    ours.fc2.kernel = nnx.Param(jnp.asarray(data[f"{theirs}.fc.3.weight"].T))
  model.image_adapter.dropout.rngs = model.text_adapter.dropout.rngs = None
  model.eval()
  return model, data


def test_stage2_forward_matches_official_dense_clip():
  model, fx = _official_stage2()
  tokens = jnp.asarray(fx["__captions__"])
  image = jnp.asarray(fx["__image__"].transpose(0, 2, 3, 1))

  @nnx.jit
  def run(m, t, i):
    return m.finetune_logits(t, jax.random.key(0)), m.branch_scores(i, "finetune")
  (z_tg, z_tl, z_ig, z_il, g), test = run(model, tokens, image)
  for name, got in (("z_tg", z_tg), ("z_tl", z_tl), ("z_ig", z_ig), ("z_il", z_il), ("tai", g),
                    ("iat", g.T)):
    _close(got, fx[f"__train_{name}__"])
  for name, got in zip(("z_tg", "z_tl", "z_ig", "z_il"), test):
    _close(got, fx[f"__test_{name}__"])


def test_local_logits_brute_force():
  rng = np.random.default_rng(0)
  local = rng.normal(size=(2, 5, 4))
  classes = rng.normal(size=(3, 4))
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  got = np.asarray(pvp_losses.local_logits(jnp.asarray(local), jnp.asarray(classes), 7.0, 4.0,
                                           jnp.asarray(mask)))
  for b in range(2):
    for c in range(3):
      s = local[b] @ classes[c] + np.where(mask[b], 0.0, -10000.0)
      w = np.exp(7 * s - (7 * s).max())
      w /= w.sum()
      np.testing.assert_allclose(got[b, c], np.sum(4 * s * w), rtol=1e-5)


def test_group_optimizers_give_each_group_its_own_chain():
  """optimizer.group_optimizers (optax.multi_transform): the prompts' and the adapters' SGD with
  their own rates and constant warm-ups equal two separately built optax chains."""
  import ml_collections
  import optax
  from optim.chain import build_chain
  c = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, momentum=0.9, schedule="cosine", weight_decay=5e-4,
      param_groups={"adapters": "adapter/"},
      group_optimizers={"adapters": dict(learning_rate=1e-3, warmup_steps=2, warmup_lr=5e-3)}))
  tx = build_chain(c, 6)
  params = {"ctx": jnp.ones(3), "text_adapter": {"w": jnp.full(2, 2.0)}}
  ref_p = optax.chain(optax.add_decayed_weights(5e-4),
                      optax.sgd(optax.cosine_decay_schedule(0.1, 6), momentum=0.9))
  ref_a = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(optax.join_schedules(
      [optax.constant_schedule(5e-3), optax.cosine_decay_schedule(1e-3, 4)], [2]), momentum=0.9))
  state, sp, sa = tx.init(params), ref_p.init(params["ctx"]), ref_a.init(params["text_adapter"])
  for step in range(4):
    grads = jax.tree.map(lambda x: x * (step + 1.0), params)
    upd, state = tx.update(grads, state, params)
    up, sp = ref_p.update(grads["ctx"], sp, params["ctx"])
    ua, sa = ref_a.update(grads["text_adapter"], sa, params["text_adapter"])
    np.testing.assert_allclose(upd["ctx"], up, rtol=1e-6)
    np.testing.assert_allclose(upd["text_adapter"]["w"], ua["w"], rtol=1e-6)
  with pytest.raises(ValueError, match="does not define"):
    build_chain(ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1,
                                               group_optimizers={"x": {}})), 6)

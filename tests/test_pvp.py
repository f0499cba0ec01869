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


# --- data -----------------------------------------------------------------------------------------
def test_class_matcher_compound_names_first_plurals_and_synonyms():
  from ml_pipelines.data.class_matcher import ClassMatcher
  m = ClassMatcher(["dog", "hot_dog", "traffic_light", "person", "bus", "knife"],
                   {"person": ["person", "man", "woman"]})
  assert m.labels("Two dogs eat a hot dog.").tolist() == [1, 1, 0, 0, 0, 0]
  assert m.labels("a hot dog stand").tolist() == [0, 1, 0, 0, 0, 0]
  assert m.labels("Traffic lights near the buses; knives").tolist() == [0, 0, 1, 0, 1, 1]
  assert m.labels("People, a man and two women").tolist() == [0, 0, 0, 1, 0, 0]
  assert m.labels("a lighthouse by the sea").tolist() == [0] * 6


def test_sentence_file_without_any_class_name_says_so(tmp_path):
  from ml_pipelines.data.multilabel import sentence_arrays
  path = tmp_path / "sentences.txt"
  path.write_text("a quiet morning\nnothing to see here\n")
  with pytest.raises(ValueError, match=r"No line of the sentence file .*sentences\.txt.*2 lines.*"
                     r"names any of the 3 classes \(dog, traffic_light, cat\)"):
    sentence_arrays(str(path), CLASSES)
  path.write_text("a dog and a cat\nno class here\ntraffic lights\n")
  arrays = sentence_arrays(str(path), CLASSES, template_copies=2)
  assert arrays["labels"].tolist() == [[1, 0, 1], [0, 1, 0]] + [[1, 0, 0]] * 2 + [[0, 1, 0]] * 2 \
      + [[0, 0, 1]] * 2
  assert arrays["tokens"].shape == (8, 77) and arrays["tokens"].dtype == np.int32


def test_shipped_digit_sentences_are_the_generator_output():
  from ml_pipelines.data.multilabel import DIGIT_SENTENCES, digit_sentences
  with open(DIGIT_SENTENCES) as f:
    assert f.read().splitlines() == digit_sentences()


def test_detection_and_nuswide_layouts_give_multi_hot_labels(tmp_path):
  """TFDS voc/coco examples (image + objects.label) and a NUS-WIDE directory written in the
  release's layout."""
  from PIL import Image
  import ml_collections
  from ml_pipelines import data
  from ml_pipelines.data import multilabel
  fake = [{"image": np.zeros((30, 40, 3), np.uint8), "objects": {"label": np.array([3, 0, 3])}}]
  ex = multilabel._ObjectLabels(fake, 5)[0]
  assert ex["labels"].tolist() == [1, 0, 0, 1, 0]
  root = tmp_path / "nus"
  (root / "ImageList").mkdir(parents=True)
  (root / "TrainTestLabels").mkdir()
  (root / "Flickr" / "actor").mkdir(parents=True)
  (root / "Concepts81.txt").write_text("\n".join(multilabel.NUSWIDE_CONCEPTS) + "\n")
  (root / "ImageList" / "TestImagelist.txt").write_text("actor\\0001.jpg\nactor\\0002.jpg\n")
  for i, name in enumerate(multilabel.NUSWIDE_CONCEPTS):
    (root / "TrainTestLabels" / f"Labels_{name}_Test.txt").write_text(
        f"{int(i == 2)}\n{int(i in (2, 80))}\n")
  for k in (1, 2):
    Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(root / "Flickr" / "actor"
                                                                  / f"000{k}.jpg")
  config = ml_collections.ConfigDict(dict(name="pvp_nuswide", train_split="train",
                                          data_dir=str(root), image_size=16))
  ds = data.get("pvp_nuswide")(config, "test")
  first, second = (ds.eval_preprocess(ds.source[i]) for i in range(2))
  assert first["image"].shape == (16, 16, 3) and first["image"].dtype == np.float32
  assert np.flatnonzero(first["labels"]).tolist() == [2]
  assert np.flatnonzero(second["labels"]).tolist() == [2, 80]
  np.testing.assert_allclose(first["image"][0, 0], (40 / 255 - np.array(multilabel.MEAN))
                             / np.array(multilabel.STD), atol=0.02)


# --- through the trainer --------------------------------------------------------------------------
def _tiny_run(**overrides):
  from configs.peft import pvp as pvp_config
  c = pvp_config.get_config("digits")
  c.model.clip = dict(TINY_CLIP, context_length=77, image_size=64, vision_width=2, text_width=16,
                      text_layers=1, text_heads=1)
  c.model.prompt_size = 64
  c.data.template_copies = 2
  c.data.scenes = 20
  c.batch_size, c.eval_batch_size = 8, 16
  c.stages = (dict(c.stages[0], steps=2), dict(c.stages[1], steps=4))
  c.total_steps, c.eval_every, c.checkpoint_every, c.log_every = 6, 0, 1, 1
  c.keep_checkpoints = 10
  c.optimizer.warmup_steps = 1
  c.stages[1]["optimizer"]["warmup_steps"] = 1
  for k, v in overrides.items():
    c[k] = v
  return c


def _trainable(state):
  from ml_pipelines import train
  from optim.paths import path_str
  return {path_str(p): np.asarray(x) for p, x in
          jax.tree_util.tree_flatten_with_path(train.Env.variables(state)[0])[0]}


@pytest.mark.slow
def test_stage2_resume_is_bit_exact_and_only_prompts_and_adapters_train(tmp_path):
  """Two stages through the trainer: stage 1 moves the image prompts only, stage 2 the prompts and
  the adapters (their own optimizer), the CLIP never (its BatchNorms on running statistics); a run
  restarted from a checkpoint inside stage 2 ends bit for bit where the uninterrupted run does."""
  import shutil
  from ml_pipelines import train
  from optim.paths import path_str
  c = _tiny_run()
  init = jax.jit(lambda: nnx.to_pure_dict(nnx.state(models.build(c.model, seed=c.seed),
                                                    nnx.Param)))()
  initial = {path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(init)[0]}
  # The second run compiles the same programs: a persistent cache for this test saves that time.
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    ref = train.train_and_evaluate(c, str(tmp_path / "ref"))
    final = _trainable(ref["state"])
    moved = {k for k in final if not np.array_equal(final[k], initial[k])}
    assert moved == {"image_prompts", "image_prompts_local", "ctx", "ctx_double",
                     "text_adapter/fc1/kernel", "text_adapter/fc2/kernel",
                     "image_adapter/fc1/kernel", "image_adapter/fc2/kernel"}
    assert "eval/mAP_image_local" in ref
    rest = train.Env.variables(ref["state"])[1]
    stats = [np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(rest)[0]
             if path_str(p).endswith("bn1/mean")]
    assert stats and all(not s.any() for s in stats)  # running means never updated (init 0)
    # the second run starts from the step-3 checkpoint of the first (stage 2 began at step 2)
    shutil.copytree(tmp_path / "ref" / "checkpoints" / "3", tmp_path / "run" / "checkpoints" / "3")
    resumed = _trainable(train.train_and_evaluate(_tiny_run(), str(tmp_path / "run"))["state"])
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
  for k in final:
    np.testing.assert_array_equal(resumed[k], final[k], err_msg=k)

"""Tower converters against tiny random PyTorch models (fixtures written by
tests/fixtures/video/make_tower_fixtures.py): Hugging Face BERT and TimeSformer."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import models
from models import convert

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "video")


def _state_dict(f):
  return {k[3:]: f[k] for k in f.files if k.startswith("sd/")}


def test_hf_bert_converter_matches_transformers():
  f = np.load(os.path.join(FIX, "bert_tiny.npz"))
  model = models.build("bert_base", vocab_size=40, hidden_size=16, num_layers=2, num_heads=2,
                       intermediate_size=24, max_position=12)
  sd = {("bert." + k if i % 2 else k): v for i, (k, v) in enumerate(_state_dict(f).items())}
  convert.load_into(model, sd, converter=convert.get("hf_bert"))
  mask = f["mask"].astype(bool)
  hidden = np.asarray(model(jnp.asarray(f["ids"]), jnp.asarray(mask)))
  np.testing.assert_allclose(hidden[mask], f["hidden"][mask], atol=1e-5)
  back = convert.to_state_dict(model, convert.get("hf_bert"))
  assert set(back) == {k for k in _state_dict(f) if not k.startswith("pooler.")}
  for k, v in back.items():
    np.testing.assert_array_equal(v, _state_dict(f)[k])


def test_bert_fusion_layers_match_albef_xbert():
  """Text layers then fusion layers (self-attention, cross-attention to 12-wide visual tokens with
  padding, FFN) against ALBEF's XBert run in its `text` then `fusion` modes on the same weights."""
  f = np.load(os.path.join(FIX, "bert_fusion_tiny.npz"))
  model = nnx.eval_shape(lambda: models.build(  # every parameter comes from the file
      "bert_base", vocab_size=40, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=24,
      max_position=12, fusion_layer=1, encoder_width=12))
  convert.load_into(model, _state_dict(f), converter=convert.get("hf_bert"))
  mask, vmask = f["mask"].astype(bool), f["visual_mask"].astype(bool)
  text = nnx.jit(lambda m, ids, k: m(ids, k))(model, jnp.asarray(f["ids"]), jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(text)[mask], f["text"][mask], atol=1e-5)
  fused = nnx.jit(lambda m, *a: m.fuse(*a))(model, jnp.asarray(f["text"]), jnp.asarray(mask),
                                            jnp.asarray(f["visual"]), jnp.asarray(vmask))
  np.testing.assert_allclose(np.asarray(fused)[mask], f["fused"][mask], atol=1e-5)


def test_hf_bert_converter_names_a_wrong_architecture():
  f = np.load(os.path.join(FIX, "bert_tiny.npz"))
  model = models.build("bert_base", vocab_size=40, hidden_size=16, num_layers=3, num_heads=2,
                       intermediate_size=24, max_position=12)
  with pytest.raises(ValueError, match="encoder.layer.2.attention.self.query.weight"):
    convert.load_into(model, _state_dict(f), converter=convert.get("hf_bert"))


def test_timesformer_converter_matches_official():
  f = np.load(os.path.join(FIX, "timesformer_tiny.npz"))
  model = models.build("timesformer_b16", embed_dim=16, depth=2, num_heads=2, patch_size=8,
                       img_size=16, num_frames=4, mlp_ratio=2.0, drop_path=0.0)
  convert.load_into(model, _state_dict(f), converter=convert.get("timesformer"))
  clip = jnp.asarray(f["clip"].transpose(0, 2, 3, 4, 1))  # [B, C, T, H, W] -> [B, T, H, W, C]
  np.testing.assert_allclose(model(clip), f["features"], atol=1e-5)


CLIP_FIX = os.path.join(os.path.dirname(__file__), "fixtures", "clip", "open_clip_vit.safetensors")
CLIP_TOWERS = dict(  # the sizes of tests/fixtures/clip/make_fixtures.py's "open_clip_vit"
    vision=dict(name="clip_vit_b32_visual", output_dim=16, image_size=32, patch_size=8, width=16,
                layers=2, heads=2, quick_gelu_act=False),
    text=dict(name="clip_vit_b32_text", output_dim=16, context_length=16, vocab_size=100,
              width=16, heads=2, layers=2, quick_gelu_act=False),
    embed_dim=16, project=False)


def test_open_clip_weights_load_into_tmvm_towers():
  """TMVM over the CLIP towers, loaded with the open_clip converter (as `init_from` does): the
  frame class tokens are open_clip's encode_image, the pooled text its encode_text, and TMVM's
  text embedding their unit vectors; with K = 4 only the new mask head is left to skip."""
  sd = load_file(CLIP_FIX)
  out = {k: sd.pop(k) for k in list(sd) if k.startswith("__")}
  model = models.build(dict(name="tmvm", num_prototypes=1, uniform_masks=True, **CLIP_TOWERS))
  convert.load_into(model, sd, converter=convert.get("open_clip"))
  image = jnp.asarray(out["__image__"].astype(np.float32).transpose(0, 2, 3, 1))
  ids = jnp.asarray(out["__tokens__"])
  mask = ids > 0
  frames = np.asarray(model.vision.tokens(image))[:, 0]
  text = np.asarray(model.text.pooled(model.text(ids, mask), ids, mask))
  want_i, want_t = out["__encode_image__"], out["__encode_text__"]
  np.testing.assert_allclose(frames, want_i, rtol=1e-5, atol=1e-5 * np.abs(want_i).max())
  np.testing.assert_allclose(text, want_t, rtol=1e-5, atol=1e-5 * np.abs(want_t).max())
  np.testing.assert_allclose(np.asarray(model.encode_text(ids, mask)),
                             want_t / np.linalg.norm(want_t, axis=-1, keepdims=True), atol=1e-5)
  k4 = models.build(dict(name="tmvm", num_prototypes=4, **CLIP_TOWERS))
  found = convert.match({"/".join(map(str, p)): v for p, v in
                         nnx.state(k4, nnx.Param).flat_state()}, sd, convert.get("open_clip"),
                        skip="^mask_head/")
  assert not found.problems and len(found.skipped) == 4 and len(found.arrays) == len(sd)


@pytest.mark.parametrize("config,rates", [
    ("tmvm.py:msrvtt", {"vision": 1e-7, "text": 1e-7, "logit_scale": 1e-7, "mask_head": 1e-4}),
    ("stvgformer.py:hcstvg", {"vision": 1e-5, "text": 1e-5, "vision_proj": 5e-5,
                              "static_encoder": 5e-5})])
def test_real_configs_give_the_clip_towers_their_own_rate(config, rates):
  """The real-data configs' optimizer on the model's own parameter tree (tiny CLIP towers): after
  the warm-up, Adam's first step moves every parameter by its group's rate (|update| = lr for a
  constant gradient), the CLIP towers at CLIP4Clip's 1e-7 (TubeDETR's 1e-5), the new layers at
  the base rate."""
  import importlib
  import jax
  from optim.chain import build_chain
  name, arg = config.split(":")
  c = importlib.import_module(f"configs.video.{name[:-3]}").get_config(arg)
  block = {k: v for k, v in c.model.to_dict().items() if k not in ("vision", "text", "embed_dim")}
  block.update({k: CLIP_TOWERS[k] for k in ("vision", "text")})
  if name == "tmvm.py":
    block.update(embed_dim=16, project=False)
  else:  # the same parameter names, fewer of them
    block.update(dim=16, heads=2, static_layers=1, dynamic_layers=1, decoder_layers=1, max_frames=4)
  model = nnx.eval_shape(lambda: models.build(block))
  params = jax.tree.map(lambda v: jnp.ones(v.shape, v.dtype), nnx.state(model, nnx.Param))
  params = nnx.to_pure_dict(params)
  c.optimizer.schedule, c.optimizer.warmup_steps = "constant", 0
  c.optimizer.weight_decay = 0.0
  c.optimizer.clip_grad_norm = 0.0
  tx = build_chain(c.optimizer, 10)
  updates, _ = tx.update(params, tx.init(params), params)
  seen = set()
  for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
    top = str(path[0].key)
    if top in rates:
      seen.add(top)
      np.testing.assert_allclose(np.abs(np.asarray(u)), rates[top], rtol=1e-3, err_msg=top)
  assert seen == set(rates)

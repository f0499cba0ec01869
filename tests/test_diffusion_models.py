"""The NNX Stable Diffusion UNet / VAE / ControlNet against diffusers on tiny random models
(tests/fixtures/diffusion/make_fixtures.py: saved with `save_pretrained`, activations from PyTorch
forward hooks and the official extractor's attention store)."""
from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.diffusion.weights import load_component

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "diffusion")
WEIGHTS = os.path.join(FIX, "weights")


@pytest.fixture(scope="module")
def ref():
  return np.load(os.path.join(FIX, "tiny_sd.npz"))


@pytest.fixture(scope="module")
def unet():
  return load_component(WEIGHTS, "unet")


def test_unet_eps_and_every_activation_match_diffusers(ref, unet):
  ids = frozenset(k[4:] for k in ref.files if k.startswith("tap/") and k != "tap/attn")
  assert len(ids) == 147  # every id of the tiny 4-level UNet
  fn, args = _forward(unet, ref, taps=ids, attention=("up_cross",))
  eps, taps = fn(*args)
  np.testing.assert_allclose(eps, ref["eps"], atol=1e-5, rtol=0)
  assert set(taps) == ids | {"attn"}
  for k in sorted(ids) + ["attn"]:
    np.testing.assert_allclose(taps[k], ref[f"tap/{k}"], atol=1e-5, rtol=0, err_msg=k)
  assert taps["attn"].shape[-1] == 2 * ref["text"].shape[1]  # two map sizes x tokens


def _forward(unet, ref, **kw):
  graphdef, state = nnx.split(unet)
  fn = jax.jit(lambda s, x, c: nnx.merge(graphdef, s)(x, int(ref["t"]), c, **kw))
  return fn, (state, jnp.asarray(ref["sample"]), jnp.asarray(ref["text"]))


def test_unrequested_taps_cost_nothing(ref, unet):
  """Requested activations add no operation to the traced program (their values exist anyway), and
  unrequested ones are never outputs, so XLA drops whatever only they would need."""
  def ops(taps):
    fn, args = _forward(unet, ref, taps=taps)
    eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns[0].params["jaxpr"].eqns
    return sum(e.primitive.name != "reshape" for e in eqns)  # tokens -> NHWC is a view
  plain = ops(frozenset())
  two = frozenset({"up-level1-repeat0-res-out", "up-level1-repeat0-vit-block0-cross-q"})
  assert ops(two) == plain


def test_unknown_activation_id_lists_closest(ref, unet):
  fn, args = _forward(unet, ref, taps=frozenset({"up-level1-repeat1-vit-block0-crossq"}))
  with pytest.raises(KeyError, match="up-level1-repeat1-vit-block0-cross-q"):
    jax.eval_shape(fn, *args)


def test_controlnet_residuals_and_controlled_eps_match_diffusers(ref, unet):
  net = load_component(WEIGHTS, "controlnet")
  x, c = jnp.asarray(ref["sample"]), jnp.asarray(ref["text"])
  down, mid = net(x, int(ref["t"]), c, jnp.asarray(ref["cond"]))
  for i, d in enumerate(down):
    np.testing.assert_allclose(d, ref[f"control_down_{i}"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(mid, ref["control_mid"], atol=1e-5, rtol=0)
  eps, _ = unet(x, int(ref["t"]), c, down_residuals=down, mid_residual=mid)
  np.testing.assert_allclose(eps, ref["eps_control"], atol=1e-5, rtol=0)


def test_vae_encode_decode_match_diffusers(ref):
  vae = load_component(WEIGHTS, "vae")
  mean, logvar = vae.encode(jnp.asarray(ref["image"]))
  np.testing.assert_allclose(mean, ref["vae_mean"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(logvar, ref["vae_logvar"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(vae.decode(mean), ref["vae_decoded"], atol=1e-5, rtol=0)


def test_missing_component_is_named(tmp_path):
  shutil.copytree(os.path.join(WEIGHTS, "unet"), tmp_path / "unet")
  with pytest.raises(FileNotFoundError, match="missing the component 'vae'"):
    load_component(str(tmp_path), "vae")
  os.remove(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
  with pytest.raises(FileNotFoundError, match="config.json and one of"):
    load_component(str(tmp_path), "unet")


def test_lora_merge_equals_merged_state_dict(ref):
  """PEFT- and kohya-layout LoRA files give the UNet whose state dict is W + (alpha/r) B A."""
  from models import convert
  from models.diffusion import lora
  rng = np.random.default_rng(0)
  sd = convert.load_state_dict(os.path.join(WEIGHTS, "unet", "diffusion_pytorch_model.safetensors"))
  q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
  v = "up_blocks.3.attentions.1.transformer_blocks.0.attn2.to_v"
  a_q, b_q = rng.normal(size=(2, 4)), rng.normal(size=(4, 2))
  a_v, b_v = rng.normal(size=(3, 8)), rng.normal(size=(4, 3))
  peft = {f"unet.{q}.lora_A.weight": a_q, f"unet.{q}.lora_B.weight": b_q}
  kohya = {f"lora_unet_{v.replace('.', '_')}.lora_down.weight": a_v,
           f"lora_unet_{v.replace('.', '_')}.lora_up.weight": b_v,
           f"lora_unet_{v.replace('.', '_')}.alpha": np.float32(1.5)}
  expected = dict(sd)
  expected[f"{q}.weight"] = sd[f"{q}.weight"] + 0.5 * (b_q @ a_q)
  expected[f"{v}.weight"] = sd[f"{v}.weight"] + 0.5 * (1.5 / 3) * (b_v @ a_v)
  unet = lora.merge_lora(load_component(WEIGHTS, "unet"), {**peft, **kohya}, scale=0.5)
  got = convert.to_state_dict(unet)
  for k in (f"{q}.weight", f"{v}.weight", "conv_in.weight"):
    np.testing.assert_allclose(got[k], expected[k], atol=1e-6, err_msg=k)
  with pytest.raises(KeyError, match="names no projection"):
    lora.merge_lora(unet, {"lora_unet_nowhere_to_q.lora_down.weight": a_q})


def test_activation_listing_and_official_set_files(ref, unet, tmp_path):
  import json
  from models.diffusion import activation_sets
  shapes = activation_sets.activation_shapes(unet, 8, tokens=5, batch=2, attention=("up_cross",))
  assert shapes == {k[4:]: ref[k].shape for k in ref.files if k.startswith("tap/")}
  path = tmp_path / "config_15_practical.json"  # the official format, as released
  ids = activation_sets.SETS["practical"][0]
  path.write_text(json.dumps({i: True for i in ids} | {"x": False}))
  assert activation_sets.load(str(path)) == (activation_sets.SETS["practical"][0], ())
  assert activation_sets.load("amalgamation")[1] == ("up_cross",)


def test_text_encoder_matches_transformers_clip(ref):
  from models.diffusion.text_encoder import load_text_encoder
  enc = load_text_encoder(WEIGHTS)
  np.testing.assert_allclose(enc.hidden_states(jnp.asarray(ref["tokens"])), ref["text_hidden"],
                             atol=1e-5, rtol=0)


def test_sdxl_layout_eps_and_taps_match_diffusers():
  """SDXL is configuration of the same UNet plus its added embedding: a tiny random diffusers UNet
  in SDXL's layout (per-level heads and transformer depths, linear projections, "text_time"
  added embedding; make_fixtures.py `sdxl`) loads from its config and matches eps and the hooked
  activations within 1e-5."""
  ref = np.load(os.path.join(FIX, "tiny_sdxl.npz"))
  unet = load_component(os.path.join(FIX, "weights_xl"), "unet")
  ids = frozenset(k[4:] for k in ref.files if k.startswith("tap/"))
  added = {"text_embeds": jnp.asarray(ref["text_embeds"]), "time_ids": jnp.asarray(ref["time_ids"])}
  graphdef, state = nnx.split(unet)
  eps, taps = jax.jit(lambda s, x, c, a: nnx.merge(graphdef, s)(x, 51, c, taps=ids, added=a))(
      state, jnp.asarray(ref["sample"]), jnp.asarray(ref["text"]), added)
  np.testing.assert_allclose(eps, ref["eps"], atol=1e-5, rtol=0)
  for k in sorted(ids):
    np.testing.assert_allclose(taps[k], ref[f"tap/{k}"], atol=1e-5, rtol=0, err_msg=k)


def test_sdxl_practical_set_exists_in_the_sdxl_layout():
  """`xl_practical` (the official config_xl_practical.json) names activations of the SDXL-base
  layout, traced abstractly at reduced width and depth (8 transformer blocks at the deepest level,
  the set's deepest index being 7; one resnet per block)."""
  from models.diffusion import activation_sets
  from models.diffusion.unet import SDXL, UNet
  options = dict(SDXL, block_out_channels=(8, 16, 16), attention_head_dim=(1, 2, 2),
                 cross_attention_dim=16, projection_class_embeddings_input_dim=8 + 6 * 4,
                 addition_time_embed_dim=4, norm_num_groups=4, layers_per_block=1,
                 transformer_layers_per_block=(1, 1, 8))
  unet = nnx.eval_shape(lambda: UNet(**options, rngs=nnx.Rngs(0)))
  shapes = activation_sets.activation_shapes(unet, 16, tokens=5)
  ids, _ = activation_sets.load("xl_practical")
  assert {i: shapes[i][1:] for i in ids} == {
      "up-level0-repeat0-vit-block7-out": (4, 4, 16),
      "up-level0-repeat0-vit-block5-out": (4, 4, 16),
      "up-level1-repeat0-vit-block0-cross-q": (8, 8, 16),
      "up-level1-repeat0-vit-block0-out": (8, 8, 16)}

"""CLIP (models/clip.py) and its tokenizer against open_clip (mlfoundations/open_clip 3.3.0).

Fixtures (tests/fixtures/clip/) were made by tests/fixtures/clip/make_fixtures.py: tiny open_clip
`CLIP` models (ModifiedResNet and ViT image towers) built from config dicts, every weight and
BatchNorm statistic randomised, run in eval mode; and open_clip's `tokenize` of a few dozen strings.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file

import models
from models import clip, convert
from models.clip_tokenizer import tokenize

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "clip")
TEXT = dict(context_length=16, vocab_size=100, text_width=16, text_heads=2, text_layers=2)
BUILD = {  # the sizes of tests/fixtures/clip/make_fixtures.py SPECS
    "open_clip_rn": dict(embed_dim=16, image_size=64, vision_layers=(1, 1, 1, 1), vision_width=2,
                         vision_head_width=16, quick_gelu_act=True, **TEXT),
    "open_clip_vit": dict(embed_dim=16, image_size=32, vision_layers=2, vision_width=16,
                          vision_patch_size=8, vision_head_width=8, quick_gelu_act=False, **TEXT),
}


def _fixture(name):
  data = load_file(os.path.join(FIXTURES, f"{name}.safetensors"))
  outs = {k: data.pop(k) for k in list(data) if k.startswith("__")}
  return data, outs


def _loaded(name, sd):
  """Built abstractly (no initialisation compute), then every variable loaded from `sd`."""
  model = nnx.eval_shape(lambda: models.build("clip_tiny_vit", **BUILD[name]))
  convert.load_into(model, sd, converter=convert.get("open_clip"))
  model.eval()
  return model


def _close(got, want):
  got = np.asarray(got)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", sorted(BUILD))
def test_open_clip_weights_reproduce_open_clip_outputs(name):
  sd, out = _fixture(name)
  model = _loaded(name, sd)
  image = jnp.asarray(out["__image__"].astype(np.float32).transpose(0, 2, 3, 1))
  tokens = jnp.asarray(out["__tokens__"])
  run = nnx.jit(lambda m, i, t: (m.encode_image(i), m.encode_text(t), m.text.hidden_states(t)))
  img, txt, hidden = run(model, image, tokens)
  _close(img, out["__encode_image__"])
  _close(txt, out["__encode_text__"])
  _close(hidden, out["__text_hidden__"])
  if name == "open_clip_vit":
    _close(nnx.jit(lambda m, i: m.visual.tokens(i))(model, image), out["__image_tokens__"])
  else:
    layer4 = nnx.jit(lambda m, i: m.visual.features(i))(model, image)
    _close(layer4, out["__layer4__"].transpose(0, 2, 3, 1))
  logits = np.asarray(nnx.jit(lambda m, i, t: m(i, t))(model, image, tokens))
  ni = out["__encode_image__"] / np.linalg.norm(out["__encode_image__"], axis=-1, keepdims=True)
  nt = out["__encode_text__"] / np.linalg.norm(out["__encode_text__"], axis=-1, keepdims=True)
  np.testing.assert_allclose(logits, np.exp(sd["logit_scale"]) * ni @ nt.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_state_dict_round_trip_uses_open_clip_names(name):
  sd, _ = _fixture(name)
  back = convert.to_state_dict(_loaded(name, sd), convert.get("open_clip"))
  assert set(back) == {k for k in sd if not k.endswith(("num_batches_tracked", "attn_mask"))}
  for k, v in back.items():
    assert v.shape == sd[k].shape, k  # logit_scale stays a scalar
    np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_other_architecture_lists_the_mismatched_names():
  sd, _ = _fixture("open_clip_vit")
  with pytest.raises(ValueError, match=r"(?s)missing in the file.*visual/attnpool/q_proj/kernel "
                     r"<- visual\.attnpool\.q_proj\.weight.*unexpected.*visual\.class_embedding"):
    rn = nnx.eval_shape(lambda: models.build("clip_tiny_vit", **BUILD["open_clip_rn"]))
    convert.load_into(rn, sd, converter=convert.get("open_clip"))


def test_torchscript_archive_reads_as_state_dict(tmp_path):
  """OpenAI's CLIP release is a TorchScript archive (torch.jit.save)."""
  module = torch.jit.script(torch.nn.Linear(2, 3))
  module.save(str(tmp_path / "m.pt"))
  with pytest.warns(UserWarning):  # torch.load says it sees a TorchScript archive
    sd = convert.load_state_dict(str(tmp_path / "m.pt"))
  assert set(sd) == {"weight", "bias"}
  np.testing.assert_array_equal(sd["weight"], module.weight.detach().numpy())


def test_tokenizer_matches_open_clip():
  with open(os.path.join(FIXTURES, "tokenizer.json")) as f:
    fx = json.load(f)
  got = tokenize(fx["strings"], fx["context_length"])
  assert got.dtype == np.int32 and got.shape == (len(fx["strings"]), 77)
  for s, row, want in zip(fx["strings"], got, fx["ids"]):
    assert row[row != 0].tolist() == want, s
    assert (row[len(want):] == 0).all()


def test_positional_interpolation_matches_torch_bicubic():
  """PVP's `interpolate_pos_encoding`: F.interpolate(scale_factor=(h + 0.1) / s, 'bicubic')."""
  rng = np.random.default_rng(0)
  pos = rng.normal(size=(1 + 7 * 7, 5)).astype(np.float32)
  for h, w in ((14, 14), (15, 15), (4, 4), (9, 12)):
    grid = torch.from_numpy(pos[1:]).reshape(1, 7, 7, 5).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, scale_factor=((h + 0.1) / 7, (w + 0.1) / 7),
                                           mode="bicubic")
    want = want.permute(0, 2, 3, 1).reshape(h * w, 5).numpy()
    got = np.asarray(clip.interpolate_positions(jnp.asarray(pos), h, w))
    np.testing.assert_allclose(got[1:], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[0], pos[0])
  np.testing.assert_array_equal(np.asarray(clip.interpolate_positions(jnp.asarray(pos), 7, 7)),
                                pos)


def test_dense_features_are_value_then_output_projection():
  """DenseCLIP's local feature at a position: c_proj(v_proj(x)); the attention pool without the
  positional embedding on a 1 x 1 grid reduces to the same map (softmax over two equal tokens)."""
  pool = clip.AttentionPool2d(1, 8, 2, 6, dtype=jnp.float32, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 1, 1, 8))

  @nnx.jit
  def run(pool, x):
    want = (x @ pool.v_proj.kernel[...] + pool.v_proj.bias[...]) @ pool.c_proj.kernel[...]
    return pool.dense(x), want + pool.c_proj.bias[...], pool(x, use_pos=False)
  dense, want, (glob, local) = run(pool, x)
  _close(dense, np.asarray(want))
  _close(glob, np.asarray(dense[:, 0, 0]))
  _close(local[:, 0], np.asarray(dense[:, 0, 0]))


@pytest.mark.parametrize("name", ["clip_rn50", "clip_vit_l14"])
def test_real_variants_have_openai_parameter_counts(name):
  """Counts of OpenAI's released models (open_clip's RN50 / ViT-L-14 configs built on the meta
  device; logit_scale included; ViT-B-32: 151,277,313, ViT-B-16: 149,620,737)."""
  want = {"clip_rn50": 102_007_137, "clip_vit_b32": 151_277_313, "clip_vit_b16": 149_620_737,
          "clip_vit_l14": 427_616_513}[name]
  model = nnx.eval_shape(lambda: models.build(name))
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert count == want

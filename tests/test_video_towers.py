"""Tower converters against tiny random PyTorch models (fixtures written by
tests/fixtures/video/make_tower_fixtures.py): Hugging Face BERT and TimeSformer."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

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

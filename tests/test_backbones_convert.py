"""Weight import: our forward on converted official weights reproduces the official PyTorch output.

Fixtures (tests/fixtures/backbones/*.safetensors) were made by tests/fixtures/backbones/
make_fixtures.py: the official DilateFormer / PSLT code and timm's ResNet / ViT at reduced size, with
every parameter and batch-norm statistic randomised, run in eval mode on a random input.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import models
from models import convert
from models.resnet import ResNet
from models.vit import ViT

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "backbones")

BUILD = {
    "dilateformer": lambda: models.build("dilateformer_tiny", embed_dim=6, depths=(1, 2, 1, 1),
                                       num_heads=(3, 3, 6, 6), num_classes=5, drop_path=0.0),
    "pslt": lambda: models.build("pslt", embed_dim=6, conv_depths=(2, 1), depths=(2, 1),
                               num_heads=(2, 2), img_size=224, num_classes=5),
    "resnet_basic": lambda: ResNet("basic", (1, 1, 1, 1), width=8, num_classes=5,
                                   rngs=nnx.Rngs(0)),
    "resnet_bottleneck": lambda: ResNet("bottleneck", (1, 1, 1, 1), width=8, num_classes=5,
                                        rngs=nnx.Rngs(0)),
    "vit": lambda: ViT(16, 2, 2, patch_size=8, img_size=32, num_classes=5, drop_path=0.0,
                       rngs=nnx.Rngs(0)),
}


def _build(name):
  """The model with abstract parameters (no init compile); `load_into` makes them concrete."""
  return nnx.eval_shape(BUILD[name])


def _concrete_rngs(model):
  """Replaces the abstract RNG state an eval_shape'd model keeps (dropout streams) by real keys."""
  def fill(x):
    if not isinstance(x, jax.ShapeDtypeStruct):
      return x
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.split(jax.random.key(0), x.shape) if x.shape else jax.random.key(0)
    return jnp.zeros(x.shape, x.dtype)
  rng_state = nnx.state(model, nnx.RngState)
  nnx.update(model, jax.tree.map(fill, rng_state))
  return model


def _load(name):
  data = load_file(os.path.join(FIXTURES, f"{name}.safetensors"))
  x = data.pop("__input__").astype(np.float32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  y = data.pop("__output__")
  return data, x, y


@pytest.mark.parametrize("name", sorted(BUILD))
def test_converted_weights_reproduce_official_output(name):
  sd, x, want = _load(name)
  model = _concrete_rngs(convert.load_into(_build(name), sd))
  model.eval()
  got = np.asarray(nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x)))
  rel = np.linalg.norm(got - want) / np.linalg.norm(want)
  assert rel < 1e-5, rel
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", ["resnet_basic", "resnet_bottleneck", "vit"])
def test_state_dict_round_trip_uses_timm_names(name):
  sd, _, _ = _load(name)
  back = convert.to_state_dict(convert.load_into(_build(name), sd))
  assert set(back) == {k for k in sd if not k.endswith("num_batches_tracked")}
  for k, v in back.items():
    np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_mismatched_state_dict_names_the_keys():
  sd, _, _ = _load("resnet_basic")
  sd = dict(sd)
  sd["extra.weight"] = np.zeros(3, np.float32)
  del sd["fc.bias"]
  with pytest.raises(ValueError,
                     match=r"(?s)missing in the file.*fc/bias <- fc\.bias.*unexpected.*extra\.weight"):
    convert.load_into(_build("resnet_basic"), sd)

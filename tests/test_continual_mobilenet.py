"""MobileNetV2 in torchvision's layout against torchvision itself (a tiny-width random model,
fixture made by tests/fixtures/continual/make_mobilenet_fixture.py), and ACL's adapters hooked
before features.3, .5, .12, .15 as the official skin8 config (GiantJun/CL_Pytorch)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

import models
from models import convert
from ml_pipelines.trainer import config as config_lib

FIXTURE = load_file(os.path.join(os.path.dirname(__file__),
                                 "fixtures/continual/mobilenet_v2.safetensors"))
TINY = dict(name="mobilenet_v2", width_mult=0.1, round_nearest=2)


def _state_dict():
  return {k: v.astype(np.float32) for k, v in FIXTURE.items() if not k.startswith("__")}


def _loaded(spec, converter: str, strict: bool = True):
  """`spec` built without initialisation compute, the fixture's state dict loaded; what the file
  does not hold (ACL adapters and heads, dropout keys) filled from a seeded generator."""
  model = nnx.eval_shape(lambda: models.build(spec, seed=0))
  convert.load_into(model, _state_dict(), strict=strict, converter=convert.get(converter))
  rng, filled = np.random.default_rng(0), []
  for path, v in nnx.state(model).flat_state():
    x = v.get_value() if hasattr(v, "get_value") else v.value
    if isinstance(x, jax.ShapeDtypeStruct):
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key(0)
      elif path[-1] == "var" or jnp.issubdtype(x.dtype, jnp.integer):
        x = jnp.ones(x.shape, x.dtype)
      else:
        x = jnp.asarray(rng.normal(size=x.shape) * 0.1, x.dtype)
      filled.append((path, v.replace(x)))
  nnx.update(model, nnx.State.from_flat_path(filled))
  model.eval()
  return model


def _input():  # make_mobilenet_fixture.normalise, NHWC
  return jnp.asarray((FIXTURE["__image__"].astype(np.float32) / 255.0 - 0.5) / 0.25)


def _nchw(x):
  return np.asarray(x).transpose(0, 3, 1, 2)


@nnx.jit
def _outputs(net, x):
  """(logits, pooled features, [stem output, stage 0..2 outputs]) in one compiled program."""
  h, staged = net.stem(x), []
  for i in range(net.num_stages):
    staged.append(h)
    h = net.stage(i, h)
  return net(x), net.pooled(x), staged


def test_mobilenet_v2_equals_torchvision_on_its_state_dict():
  net = _loaded(dict(TINY, num_classes=3), "torchvision_mobilenet_v2")
  logits, pooled, staged = _outputs(net, _input())
  np.testing.assert_allclose(np.asarray(logits), FIXTURE["__logits__"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pooled), FIXTURE["__pooled__"], rtol=1e-5, atol=1e-5)
  # The staged view: the stem and each stage end where torchvision's features.3, .5, .12, .15
  # begin (the inputs ACL's pre-hooks see); float32 sums of 15 layers: 5e-5.
  for i, (h, layer) in enumerate(zip(staged, (3, 5, 12, 15))):
    np.testing.assert_allclose(_nchw(h), FIXTURE[f"__in_features.{layer}__"], rtol=5e-5,
                               atol=5e-5, err_msg=f"features.{layer}")
    assert net.stage_inputs[i] == h.shape[-1]
  # Exported back under torchvision's names, every array round-trips.
  back = convert.to_state_dict(net, convert.get("torchvision_mobilenet_v2"))
  assert back.keys() == _state_dict().keys()
  for k, v in _state_dict().items():
    np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_acl_adapters_hooked_in_mobilenet_v2_and_the_skin8_config():
  net = _loaded({"name": "acl_net", "backbone": TINY, "task_sizes": (2, 2), "hooks": (0, 1, 2, 3)},
                "torchvision_mobilenet_v2_backbone", strict=False)
  x = _input()
  chans = [FIXTURE[f"__in_features.{i}__"].shape[1] for i in (3, 5, 12, 15)]
  assert [net.adapters[h][0].conv.in_features for h in range(4)] == chans
  # alpha = 0: every adapter is the identity, each path is the pretrained extractor; then adapter
  # 1 before features.15 acts on path 1 only.
  paths = nnx.jit(lambda m, x: [m.features(x, p) for p in (0, 1)])
  for hook in net.adapters:
    for a in hook:
      a.alpha.value = jnp.zeros(1)
  for f in paths(net, x):
    np.testing.assert_allclose(np.asarray(f), FIXTURE["__pooled__"], rtol=1e-5, atol=1e-5)
  net.adapters[3][1].alpha.value = jnp.ones(1)
  f0, f1 = paths(net, x)
  np.testing.assert_allclose(np.asarray(f0), FIXTURE["__pooled__"], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(f1) - FIXTURE["__pooled__"]).max() > 1e-3
  c = config_lib.load("configs/continual/acl.py:skin8")
  assert c.model.backbone.name == "mobilenet_v2" and tuple(c.model.hooks) == (0, 1, 2, 3)
  assert c.init_from.converter == "torchvision_mobilenet_v2_backbone"

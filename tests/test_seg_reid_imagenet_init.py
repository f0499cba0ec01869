"""ImageNet ResNet weights into the segmenter's backbone (`torchvision_resnet_segmenter`) and into
SGIEL's two-stream network (`torchvision_resnet_sgiel`), through `init_from` with the configs'
blocks: eval-mode features equal torchvision's own `ResNet` forward (fixture made by running
torchvision's `models/resnet.py` on seeded weights, `fixtures/sgiel/make_torchvision_fixtures.py`)
within 1e-5."""
from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from flax import nnx

import models
from ml_pipelines.trainer import config as config_lib
from ml_pipelines.trainer import init_from

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
sys.path.insert(0, os.path.join(FIXTURES, "sgiel"))
sys.path.insert(0, os.path.join(FIXTURES, "hashing"))
from make_torchvision_fixtures import probes  # noqa: E402
from seeded_weights import seeded_input, seeded_state_dict  # noqa: E402


def _fixture(name, seed, tmp_path):
  """(reference outputs, path of the seeded torchvision state dict as .safetensors)."""
  from safetensors.numpy import save_file
  with open(os.path.join(FIXTURES, "sgiel", "torchvision_resnet_shapes.json")) as f:
    shapes = json.load(f)[name]
  path = str(tmp_path / f"{name}.safetensors")
  save_file(seeded_state_dict(shapes, seed), path)
  return np.load(os.path.join(FIXTURES, "sgiel", "torchvision_resnet.npz")), path


SENTINEL = -7.0


def _load(spec, init_config):
  """`init_from.apply` as the trainer calls it on the variables of `models.build(spec)`, built
  abstractly with every value SENTINEL (what the file does not fill keeps it); then the model in
  eval mode and the variables."""
  def fill(s):
    if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
      return jax.random.key(0)
    return np.full(s.shape, SENTINEL, s.dtype)
  abstract = nnx.eval_shape(lambda: models.build(spec))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  variables = {"params": jax.tree.map(fill, nnx.to_pure_dict(params)),
               "rest": jax.tree.map(fill, nnx.to_pure_dict(rest))}
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  out = init_from.apply(init_config, variables, jax.tree.map(lambda _: device, variables))
  nnx.replace_by_pure_dict(params, out["params"])
  nnx.replace_by_pure_dict(rest, out["rest"])
  model = nnx.merge(graphdef, params, rest)
  model.eval()
  return model, out


def test_segmenter_backbone_from_torchvision_resnet(tmp_path):
  ref, path = _fixture("r18", 0, tmp_path)
  c = config_lib.load(os.path.join(CONFIGS, "segmentation", "aucseg.py") + ":ade20k")
  model, out = _load(dict(name="segmenter", backbone=dict(name="resnet18"), num_classes=3,
                          channels=8),
                     ml_collections.ConfigDict({**c.init_from.to_dict(), "path": path}))
  assert np.all(np.asarray(out["params"]["head"]["cls"]["kernel"]) == SENTINEL)  # skipped
  x = seeded_input((1, 3, 64, 64), 20).transpose(0, 2, 3, 1)
  feats = jax.jit(lambda m, x: m.backbone.stage_features(x))(model, x)
  for i, (f, p) in enumerate(zip(feats, probes((64, 128, 256, 512)))):
    np.testing.assert_allclose(np.asarray(f) @ p, ref[f"r18_layer{i + 1}"], atol=1e-5, rtol=1e-5)


def test_sgiel_streams_from_torchvision_resnet(tmp_path):
  """With every BN copy's statistics loaded, all four stems x BN sets reproduce torchvision's
  layer4; with the config's skip the infrared / shape copies' statistics are not loaded (they keep
  their fresh defaults, as the code's `init_bn`) while their affine parameters are torchvision's."""
  ref, path = _fixture("r50", 1, tmp_path)
  c = config_lib.load(os.path.join(CONFIGS, "reid", "sgiel.py") + ":sysu")
  spec = dict(name="sgiel", num_classes=5, depths=(1, 1, 1, 1), width=64, last_stride=1)
  block = {**c.init_from.to_dict(), "path": path}
  model, _ = _load(spec, {**block, "skip": r"^(bottleneck|classifier|proj)"})
  x = seeded_input((2, 3, 64, 32), 21).transpose(0, 2, 3, 1)

  @jax.jit
  def streams(m, x):
    return (m.trunk(m.visible(x), "visible"), m.trunk(m.thermal(x), "infrared"),
            m.trunk(m.visible(x, shape=True), "shape"), m.trunk(m.thermal(x, shape=True), "shape"))
  for f in streams(model, x):
    np.testing.assert_allclose(np.asarray(f) @ probes((2048,))[0], ref["r50_layer4"], atol=1e-5,
                               rtol=1e-5)
  _, out = _load(spec, block)
  bn, affine = out["rest"]["layer2"][0], out["params"]["layer2"][0]
  for s in ("_ir", "_shape"):
    assert np.all(np.asarray(bn["bn1" + s]["mean"]) == SENTINEL)  # skipped: fresh statistics
    assert np.all(np.asarray(bn["downsample_bn" + s]["var"]) == SENTINEL)
    np.testing.assert_array_equal(affine["bn1" + s]["scale"], affine["bn1"]["scale"])
  assert np.all(np.asarray(out["rest"]["visible"]["bn1_shape"]["mean"]) == SENTINEL)
  assert not np.any(np.asarray(bn["bn1"]["mean"]) == SENTINEL)
  assert np.all(np.asarray(out["params"]["proj"]) == SENTINEL)

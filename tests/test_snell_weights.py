"""ViT-B/16 ImageNet-21k weights into the adapter-carrying ViT through `init_from`: the original
Google `.npz` (with its 21k head and `pre_logits` layer) and timm's headless
`vit_base_patch16_224.orig_in21k` safetensors, at tiny size from the timm fixture
(tests/fixtures/backbones/vit.safetensors). Adapters and the new head are absent from the files
and keep their initialisation."""
from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

import models
from configs.peft import snell
from ml_pipelines.trainer import init_from
from models import convert
from tests.test_init_from import VIT, _pretrained, _variables

SKIP = snell.get_config("cub").init_from.skip


def _adapted():
  return models.build("vit_b16", num_classes=7, adapter=dict(kind="kernel", rank=4, sparsity=0.5),
                      **VIT)


def _check_loaded(out, sd, variables):
  flat = init_from.flat_paths(out["params"])
  before = init_from.flat_paths(variables["params"])
  tv = convert.get("timm_vit")
  for path, value in flat.items():
    if "adapter_" in path or path.startswith("head/"):
      np.testing.assert_array_equal(value, before[path], err_msg=path)  # kept at init
    else:
      (key,) = tv.keys(path)
      want = tv.to_ours(path, [sd[key]])
      np.testing.assert_array_equal(np.asarray(value), want, err_msg=path)
  assert any("adapter_" in p for p in flat)


def test_in21k_npz_with_pre_logits_and_21k_head(tmp_path):
  path, sd, _, _ = _pretrained("vit", tmp_path)
  plain = convert.load_into(nnx.eval_shape(lambda: models.build("vit_b16", num_classes=5, **VIT)),
                            sd)
  google = convert.get("vit_npz")
  npz = {}
  for p, var in nnx.state(plain, nnx.Param).flat_state():
    npz.update(google.to_file("/".join(map(str, p)), np.asarray(var[...]), num_heads=2))
  rng = np.random.default_rng(0)
  npz["head/kernel"] = rng.normal(size=(16, 11)).astype(np.float32)  # the 21k-class head
  npz["head/bias"] = np.zeros(11, np.float32)
  npz["pre_logits/kernel"] = rng.normal(size=(16, 16)).astype(np.float32)
  npz["pre_logits/bias"] = np.zeros(16, np.float32)
  npz_path = str(tmp_path / "ViT-B_16.npz")
  np.savez(npz_path, **npz)
  _, variables, shardings = _variables(_adapted)
  out = init_from.apply({"path": npz_path, "converter": "vit_npz", "skip": SKIP}, variables,
                        shardings)
  _check_loaded(out, sd, variables)
  # Without skipping the new parts, strict loading names every adapter factor it cannot find.
  with pytest.raises(ValueError,
                     match=r"blocks/0/attn/adapter_q/a <- .*blocks/1/mlp/adapter_fc2/b"):
    init_from.apply({"path": npz_path, "converter": "vit_npz", "skip": "^head/"}, variables,
                    shardings)


def test_timm_orig_in21k_safetensors_without_head(tmp_path):
  _, sd, _, _ = _pretrained("vit", tmp_path)
  headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
  path = str(tmp_path / "model.safetensors")
  save_file(headless, path)
  _, variables, shardings = _variables(_adapted)
  out = init_from.apply({"path": path, "converter": "timm_vit", "skip": SKIP}, variables,
                        shardings)
  _check_loaded(out, sd, variables)

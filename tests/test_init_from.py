"""`config.init_from`: pretrained weights through a converter, once at step 0 of a run.

The pretrained files are tests/fixtures/backbones/{vit,resnet_basic}.safetensors: timm's
VisionTransformer / ResNet at tiny sizes, every weight and batch-norm statistic randomised, with
timm's logits on a fixed input (tests/fixtures/backbones/make_fixtures.py regenerates them).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from safetensors.numpy import load_file, save_file

import models
from ml_pipelines import train
from ml_pipelines.trainer import config as config_lib
from ml_pipelines.trainer import init_from
from models import convert
from models.resnet import ResNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "backbones")
VIT = dict(embed_dim=16, depth=2, num_heads=2, patch_size=8, img_size=32, drop_path=0.0)


def _pretrained(name, tmp_path):
  """The timm state dict alone as a .safetensors file in tmp_path, its dict, input and logits."""
  sd = load_file(os.path.join(FIXTURES, f"{name}.safetensors"))
  x = sd.pop("__input__").astype(np.float32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  y = sd.pop("__output__")
  path = str(tmp_path / f"{name}.safetensors")
  save_file(sd, path)
  return path, sd, x, y


def _build(name, num_classes=5):
  if name == "vit":
    return models.build("vit_b16", num_classes=num_classes, **VIT)
  return ResNet("basic", (1, 1, 1, 1), width=8, num_classes=num_classes, rngs=nnx.Rngs(0))


def _variables(make):
  """(graphdef in eval mode, {'params', 'rest'} pure dicts as the trainer has them, shardings).
  The values are zeros (RNG keys: a fixed key): every test overwrites or compares them, and
  compiling a real initialisation costs XLA:CPU seconds (truncated normals)."""
  abstract = nnx.eval_shape(make)
  abstract.eval()
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)

  def fill(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.split(jax.random.key(0), x.shape) if x.shape else jax.random.key(0)
    return jnp.zeros(x.shape, x.dtype)
  variables = jax.tree.map(fill, {"params": nnx.to_pure_dict(params),
                                  "rest": nnx.to_pure_dict(rest)})
  repl = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())
  return graphdef, variables, jax.tree.map(lambda _: repl, variables)


def _logits(graphdef, variables, x):
  return np.asarray(jax.jit(lambda v, x: nnx.merge(graphdef, v["params"], v["rest"])(x))(
      variables, jnp.asarray(x)))


@pytest.mark.parametrize("name,converter,fmt", [("vit", "timm_vit", "safetensors"),
                                                ("resnet_basic", "timm_resnet", "pth")])
def test_apply_reproduces_timm_logits(name, converter, fmt, tmp_path):
  path, sd, x, want = _pretrained(name, tmp_path)
  if fmt == "pth":  # a training checkpoint: nested, DataParallel 'module.' prefixes, an int buffer
    import torch
    path = str(tmp_path / f"{name}.pth")
    nested = {f"module.{k}": torch.from_numpy(v) for k, v in sd.items()}
    nested["module.bn1.num_batches_tracked"] = torch.tensor(7)
    torch.save({"epoch": 3, "state_dict": nested}, path)
  graphdef, variables, shardings = _variables(lambda: _build(name))
  out = init_from.apply({"path": path, "converter": converter}, variables, shardings)
  got = _logits(graphdef, out, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  leaf = jax.tree.leaves(out["params"])[0]
  assert leaf.sharding == jax.tree.leaves(shardings["params"])[0]


def test_vit_npz_google_names(tmp_path):
  """Our ViT written under the original Google names (the converter's inverse) is laid out as
  timm's own npz loader expects (q/k/v [D, heads, head_dim], rows of timm's qkv), and reads back
  to timm's logits."""
  path, sd, x, want = _pretrained("vit", tmp_path)
  loaded = convert.load_into(nnx.eval_shape(lambda: _build("vit")), sd)
  google = convert.get("vit_npz")
  npz = {}
  for p, var in nnx.state(loaded, nnx.Param).flat_state():
    npz.update(google.to_file("/".join(map(str, p)), np.asarray(var[...]), num_heads=2))
  block = "Transformer/encoderblock_1"
  assert {"cls", "embedding/kernel", "Transformer/posembed_input/pos_embedding",
          f"{block}/MlpBlock_3/Dense_0/kernel", "Transformer/encoder_norm/scale",
          "head/bias"} <= set(npz)
  qkv = sd["blocks.1.attn.qkv.weight"]  # timm [3D, D]: rows q | k | v
  for i, n in enumerate(("query", "key", "value")):
    np.testing.assert_array_equal(npz[f"{block}/MultiHeadDotProductAttention_1/{n}/kernel"],
                                  qkv[16 * i:16 * (i + 1)].T.reshape(16, 2, 8))
  np.testing.assert_array_equal(npz[f"{block}/MultiHeadDotProductAttention_1/out/kernel"],
                                sd["blocks.1.attn.proj.weight"].T.reshape(2, 8, 16))
  npz_path = str(tmp_path / "ViT-tiny.npz")
  np.savez(npz_path, **npz)
  graphdef, variables, shardings = _variables(lambda: _build("vit"))
  out = init_from.apply({"path": npz_path, "converter": "vit_npz"}, variables, shardings)
  np.testing.assert_allclose(_logits(graphdef, out, x), want, rtol=1e-5,
                             atol=1e-5 * np.abs(want).max())


def _small_vit_config(path):
  c = config_lib.load(os.path.join(ROOT, "configs/backbones/vit.py:digits_rgb"))
  c.total_steps, c.batch_size, c.eval_batch_size = 2, 16, 120
  c.log_every, c.eval_every, c.checkpoint_every = 1, 0, 2
  c.optimizer.warmup_steps = 1
  return config_lib.override(c, [f"init_from.path={path}", "init_from.skip=^head/"])


@pytest.mark.slow
def test_trainer_loads_once_then_resumes(tmp_path, monkeypatch):
  path, sd, _, _ = _pretrained("vit", tmp_path)
  config = _small_vit_config(path)
  assert config.init_from.converter == "timm_vit"
  calls = []
  real_apply = init_from.apply

  def spy(init_config, variables, shardings):
    before = jax.tree.map(np.asarray, variables["params"])
    out = real_apply(init_config, variables, shardings)
    calls.append((before, jax.tree.map(np.asarray, out["params"])))
    return out
  monkeypatch.setattr(init_from, "apply", spy)
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(config, workdir)
  assert len(calls) == 1
  fresh, loaded = map(init_from.flat_paths, calls[0])
  torch_names = convert.get("timm_vit")
  for p, value in loaded.items():
    if p.startswith("head/"):
      continue
    ((key, theirs),) = torch_names.to_file(p, value).items()
    np.testing.assert_array_equal(theirs, sd[key], err_msg=p)
  assert loaded["head/kernel"].shape == (16, 10) and sd["head.weight"].shape == (5, 16)
  for p in ("head/kernel", "head/bias"):  # the trainer's seeded initialisation, kept
    np.testing.assert_array_equal(loaded[p], fresh[p], err_msg=p)
  assert 0.01 < fresh["head/kernel"].std() < 0.03  # timm's trunc-normal(.02) head
  qkv = "blocks/0/attn/qkv/kernel"
  assert not np.array_equal(loaded[qkv], fresh[qkv])
  trained = jax.tree.map(np.asarray, first["state"]["params"])
  assert not np.array_equal(trained["blocks"][0]["mlp"]["fc1"]["kernel"],
                            loaded["blocks/0/mlp/fc1/kernel"])

  # Our own run as the source (`ours`): its workdir or its checkpoints/ directory.
  _, variables, shardings = _variables(lambda: models.build(config.model, seed=1))
  for source in (workdir, os.path.join(workdir, "checkpoints")):
    ours = real_apply({"path": source}, variables, shardings)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, ours["params"]), trained)

  # The same command again resumes from its checkpoint; the pretrained file is not read again.
  os.remove(path)
  second = train.train_and_evaluate(config, workdir)
  assert len(calls) == 1 and int(second["state"]["step"]) == config.total_steps
  jax.tree.map(np.testing.assert_array_equal,
               jax.tree.map(np.asarray, second["state"]["params"]), trained)


# --- error cases (shapes only: nothing is loaded) -------------------------------------------------
def _abstract(name, num_classes=5):
  model = nnx.eval_shape(lambda: _build(name, num_classes))
  params, rest = nnx.state(model, nnx.Param), nnx.state(model, nnx.Not(nnx.Param))
  return {"params": nnx.to_pure_dict(params), "rest": nnx.to_pure_dict(rest)}


def test_missing_file_names_the_path(tmp_path):
  missing = str(tmp_path / "nowhere" / "vit.safetensors")
  with pytest.raises(FileNotFoundError, match="nowhere/vit.safetensors"):
    init_from.apply({"path": missing, "converter": "timm_vit"}, _abstract("vit"), None)
  with pytest.raises(FileNotFoundError, match="No checkpoint in .*empty_run/checkpoints"):
    os.makedirs(tmp_path / "empty_run")
    init_from.apply({"path": str(tmp_path / "empty_run")}, _abstract("vit"), None)


def test_unknown_converter_and_option_list_the_valid_ones(tmp_path):
  path, _, _, _ = _pretrained("vit", tmp_path)
  with pytest.raises(KeyError, match=r"Unknown checkpoint converter 'tim_vit'.*timm_vit.*"
                                     r"Known: .*ours.*torchvision_resnet.*vit_npz"):
    init_from.apply({"path": path, "converter": "tim_vit"}, _abstract("vit"), None)
  with pytest.raises(KeyError, match="Unknown init_from option 'stict'.*'strict'"):
    init_from.apply({"path": path, "converter": "timm_vit", "stict": False}, _abstract("vit"),
                    None)


def test_wrong_architecture_lists_every_name(tmp_path):
  path, _, _, _ = _pretrained("resnet_basic", tmp_path)
  with pytest.raises(ValueError) as err:
    init_from.apply({"path": path, "converter": "timm_vit"}, _abstract("vit"), None)
  msg = str(err.value)
  # nothing matches (the heads' shapes agree, but both have 5 classes and differ in width)
  assert "no variable of the model was loaded" in msg
  for name in ("cls_token <- cls_token", "blocks/1/attn/qkv/kernel <- blocks.1.attn.qkv.weight",
               "layer4.0.conv2.weight", "bn1.running_var"):
    assert name in msg, name
  path, _, _, _ = _pretrained("vit", tmp_path)
  with pytest.raises(ValueError, match=r"mis-shaped \(2\): head/bias <- head.bias: ours \(10,\), "
                                       r"file \(5,\), head/kernel <- head.weight: ours "
                                       r"\(16, 10\), file \(5, 16\)"):
    init_from.apply({"path": path, "converter": "timm_vit"}, _abstract("vit", 10), None)


def test_non_strict_warns_by_name_and_loads_the_rest(tmp_path):
  path, sd, _, _ = _pretrained("vit", tmp_path)
  sd["extra.weight"] = np.zeros(3, np.float32)
  del sd["norm.bias"]
  save_file(sd, path)
  _, variables, shardings = _variables(lambda: _build("vit", 10))
  with pytest.warns(UserWarning, match=r"(?s)missing.*norm/bias <- norm.bias.*unexpected.*"
                                       r"extra\.weight.*mis-shaped.*head/kernel"):
    out = init_from.apply({"path": path, "converter": "timm_vit", "strict": False}, variables,
                          shardings)
  np.testing.assert_array_equal(out["params"]["norm"]["scale"], sd["norm.weight"])
  np.testing.assert_array_equal(out["params"]["norm"]["bias"], variables["params"]["norm"]["bias"])
  np.testing.assert_array_equal(out["params"]["head"]["kernel"],
                                variables["params"]["head"]["kernel"])


def test_hashing_paper_config_reads_torchvision_resnet():
  """configs/hashing (paper scale): trunk and the full-width layer4 copies read torchvision's
  ResNet; only the ImageNet classifier is left over (ExchNet on ResNet-18 to stay small)."""
  c = config_lib.load(os.path.join(ROOT, "configs/hashing/exchnet.py:cub,32"))
  assert c.init_from.converter == "torchvision_resnet" and not c.init_from.strict
  model = nnx.eval_shape(lambda: models.build(c.model, backbone="resnet18"))
  ours = init_from.flat_paths(nnx.to_pure_dict(nnx.state(model, nnx.Any(nnx.Param,
                                                                         nnx.BatchStat))))
  resnet = nnx.eval_shape(lambda: models.build("resnet18", num_classes=1000))
  torch_names = convert.get("torchvision_resnet")
  file = {}
  for p, v in init_from.flat_paths(nnx.to_pure_dict(nnx.state(
      resnet, nnx.Any(nnx.Param, nnx.BatchStat)))).items():
    file.update(torch_names.to_file(p, np.broadcast_to(np.float32(0), v.shape)))
  found = convert.match(ours, file, torch_names, c.init_from.skip)
  assert not found.missing and not found.misshaped, found.problems
  assert found.unexpected == ["fc.bias", "fc.weight"]
  assert torch_names.keys("global_stage/blocks/1/bn2/mean") == ("layer4.1.bn2.running_mean",)
  assert {"trunk/layer3/1/conv2/kernel", "local_stage/blocks/0/downsample_conv/kernel",
          "global_stage/blocks/0/conv1/kernel"} <= set(found.arrays)
  assert all(p.startswith(("trunk/", "global_stage/", "local_stage/")) for p in found.arrays)
  assert any(p.startswith("attention_stage/") for p in found.skipped)

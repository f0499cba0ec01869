"""Each backbone trains a few steps through the trainer on the embedded digits_rgb (tiny widths,
bf16 compute, DeiT recipe incl. mixup/cutmix and RandAugment): 8-device fsdp in-process, and single
device in a fresh process (the device count is fixed at JAX start-up)."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ml_pipelines.trainer import config as config_lib
from ml_pipelines import train
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("resnet", "vit", "dilateformer", "pslt")


def small(name, **overrides):
  c = config_lib.load(os.path.join(ROOT, f"configs/backbones/{name}.py:digits_rgb"))
  c.total_steps, c.batch_size, c.eval_batch_size = 2, 16, 120
  c.log_every, c.eval_every, c.checkpoint_every = 1, 0, 0
  c.optimizer.warmup_steps = 1
  for k, v in overrides.items():
    config_lib.override(c, [f"{k}={v!r}"])
  return c


def _metric(result, name):
  return next(float(v) for k, v in result.items() if k.split("/")[-1] == name)


def _check(result):
  assert np.isfinite(_metric(result, "loss")), result
  assert 0.0 <= _metric(result, "accuracy") <= 1.0
  params = result["state"]["params"]
  leaves = jax.tree.leaves(params)
  assert all(x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x))) for x in leaves)
  return params


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_trains_with_fsdp_on_8_devices(name, tmp_path):
  c = small(name, **{"mesh.data": 1, "mesh.fsdp": 8})
  params = _check(train.train_and_evaluate(c, str(tmp_path)))
  specs = [x.sharding.spec for x in jax.tree.leaves(params)]
  assert any("fsdp" in tuple(s) for s in specs), "no parameter is split over fsdp"


@pytest.mark.slow
def test_all_backbones_train_on_one_device(tmp_path):
  script = f"""
import json, sys
sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
import jax
jax.config.update("jax_num_cpu_devices", 1)
jax.config.update("jax_platforms", "cpu")
from test_backbones_train import small, CONFIGS
from ml_pipelines import train
out = {{}}
for name in CONFIGS:
  r = train.train_and_evaluate(small(name), {str(tmp_path)!r} + "/" + name)
  m = {{k.split("/")[-1]: float(v) for k, v in r.items() if k != "state"}}
  out[name] = [len(jax.devices()), m["loss"], m["accuracy"]]
print("RESULT" + json.dumps(out))
"""
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.split("RESULT")[-1])
  for name in CONFIGS:
    devices, loss, acc = out[name]
    assert devices == 1 and np.isfinite(loss) and 0 <= acc <= 1, (name, out[name])

"""ACL against the official code (GiantJun/CL_Pytorch; fixtures made by
tests/fixtures/continual/make_fixtures.py): the adapter forward with saved weights, min-"others"
inference, herding; and exact resume of an ACL run whose process is SIGKILLed right after herding
and mid-phase-2."""
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ml_pipelines import train
from ml_pipelines.data import continual as protocol
from ml_pipelines.evaluators import continual as cl_eval
from ml_pipelines.trainer import config as config_lib
from models.acl import Adapter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "fixtures/continual/acl.npz"))


def _adapter_from_torch(f):
  a = Adapter(8, rngs=nnx.Rngs(0))
  a.conv.kernel.value = jnp.asarray(f["adapter/conv.weight"].transpose(2, 3, 1, 0))
  a.conv.bias.value = jnp.asarray(f["adapter/conv.bias"])
  # PyTorch's transposed conv is the gradient of a conv: flax's (transpose_kernel=False) equals it
  # with the kernel flipped spatially; torch stores [in, out, kh, kw].
  a.conv_t.kernel.value = jnp.asarray(f["adapter/convTransposed.weight"][:, :, ::-1, ::-1]
                                      .transpose(2, 3, 0, 1))
  a.conv_t.bias.value = jnp.asarray(f["adapter/convTransposed.bias"])
  for ours, theirs in ((a.bn1, "bn1"), (a.bn2, "bn2")):
    ours.scale.value = jnp.asarray(f[f"adapter/{theirs}.weight"])
    ours.bias.value = jnp.asarray(f[f"adapter/{theirs}.bias"])
    ours.mean.value = jnp.asarray(f[f"adapter/{theirs}.running_mean"])
    ours.var.value = jnp.asarray(f[f"adapter/{theirs}.running_var"])
  a.alpha.value = jnp.asarray(f["adapter/alpha"])
  return a


def test_adapter_forward_equals_official_special_adapter_v1():
  a = _adapter_from_torch(FIXTURE)
  x = jnp.asarray(FIXTURE["adapter_x"].transpose(0, 2, 3, 1))
  a.eval()
  np.testing.assert_allclose(np.asarray(a(x)).transpose(0, 3, 1, 2), FIXTURE["adapter_eval_out"],
                             rtol=1e-5, atol=1e-5)
  a.train()  # batch statistics (PyTorch normalises with the biased batch variance too)
  np.testing.assert_allclose(np.asarray(a(x)).transpose(0, 3, 1, 2),
                             FIXTURE["adapter_train_out"], rtol=1e-4, atol=1e-4)


def test_min_others_and_herding_equal_official():
  pred, task, conf = cl_eval.min_others_predict(FIXTURE["others_logits"], [2, 2, 2])
  np.testing.assert_array_equal(pred, FIXTURE["others_preds"])
  np.testing.assert_allclose(conf, FIXTURE["others_max_scores"], rtol=1e-5)
  true_task = FIXTURE["others_targets"] // 2
  assert int(np.sum(task == true_task)) == int(FIXTURE["others_task_correct"])
  np.testing.assert_array_equal(protocol.herding_select(FIXTURE["herding_vectors"], 7),
                                FIXTURE["herding_selected"])


TINY = os.path.join(ROOT, "tests/fixtures/continual/tiny_acl.py")


def _kill_at_checkpoint(workdir, step: int):
  """Runs the tiny ACL config in a fresh process (slowed to 0.3 s a step) and SIGKILLs it as soon
  as the checkpoint of `step` exists, before the one of `step + 1` is written."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TRAIN_DRIVER_SLEEP="0.3",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # later runs reuse the compiles
  env.pop("XLA_FLAGS", None)
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/train_driver.py"),
                           str(workdir / "unused.npz"), f"--config={TINY}", f"--workdir={workdir}",
                           "--cpu_devices=8"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  ckpts, deadline = workdir / "checkpoints", time.time() + 240
  while not (ckpts / str(step)).is_dir():
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stdout.close()
  assert not (ckpts / str(step + 1)).exists(), f"the run passed step {step + 1} before the kill"


def test_acl_sigkill_right_after_herding_and_mid_phase_2_resumes_exactly(tmp_path):
  work = tmp_path / "run"
  # Killed right after the herding that starts the second task's phase 2 (checkpoint 2, written
  # after the stage hook), then, resumed, killed mid-phase-2 (checkpoint 3); the last resume runs
  # here.
  _kill_at_checkpoint(work, 2)
  _kill_at_checkpoint(work, 3)
  res = train.train_and_evaluate(config_lib.load(TINY), str(work))
  ref = train.train_and_evaluate(config_lib.load(TINY), str(tmp_path / "ref"))
  a = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(
      (train.Env.variables(ref["state"]), ref["state"]["extra"]))[0]}
  b = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(
      (train.Env.variables(res["state"]), res["state"]["extra"]))[0]}
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert res["eval/task_id_accuracy"] == ref["eval/task_id_accuracy"]
  assert res["eval/forgetting"] == ref["eval/forgetting"]
  # Phase 1 trained adapter 1 from a copy of adapter 0: its alpha left the initial 0.02, and
  # adapter 0 (frozen since task 0) differs from it.
  params = train.Env.variables(ref["state"])[0]
  alphas = [float(params["adapters"][0][t]["alpha"][0]) for t in range(2)]
  assert alphas[1] != 0.02 and alphas[0] != alphas[1]

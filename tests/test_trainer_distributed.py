"""The trainer across device counts, processes and a SIGKILL, each run in a fresh process."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/classification/digits_cnn.py")
SMALL = ["--config.model.width=8", "--config.model.hidden=16", "--config.batch_size=32",
         "--config.eval_batch_size=64", "--config.log_every=5", "--config.eval_every=0",
         "--config.optimizer.warmup_steps=2"]


def _env(extra=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)
  env.update(extra or {})
  return env


def _cmd(out, workdir, devices, *overrides):
  return [sys.executable, os.path.join(ROOT, "tests/train_driver.py"), str(out),
          f"--config={CONFIG}", f"--workdir={workdir}", f"--cpu_devices={devices}", *SMALL,
          *overrides]


def _run(out, workdir, devices, *overrides, env=None):
  proc = subprocess.run(_cmd(out, workdir, devices, *overrides), env=_env(env), cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return dict(np.load(out)), proc.stdout


def _assert_close(a, b, rtol=2e-5, atol=2e-6):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def test_one_device_equals_eight_devices_data_by_fsdp(tmp_path):
  steps = ["--config.total_steps=20", "--config.checkpoint_every=0"]
  one, _ = _run(tmp_path / "one.npz", tmp_path / "one", 1, *steps)
  eight, out = _run(tmp_path / "eight.npz", tmp_path / "eight", 8, *steps,
                    "--config.mesh.data=4", "--config.mesh.fsdp=2")
  assert "'data': 4, 'fsdp': 2" in out
  _assert_close(one, eight)
  # The runs really trained: parameters moved away from their initial values.
  init, _ = _run(tmp_path / "init.npz", tmp_path / "init", 1, "--config.total_steps=1",
                 "--config.checkpoint_every=0", "--config.optimizer.learning_rate=0.0")
  assert max(np.abs(one[k] - init[k]).max() for k in one) > 1e-3


def test_sigkill_and_resume_is_bit_identical(tmp_path):
  """Killed right after the checkpoint at a stage boundary (step 20: the second stage trains only
  the classifier with a fresh optimizer), the resumed run equals the uninterrupted one."""
  stages = ("--config.stages=({'name': 'all', 'steps': 20}, {'name': 'head', 'steps': 20, "
            "'trainable': '^fc2/', 'optimizer': {'learning_rate': 0.01}})")
  steps = ["--config.total_steps=40", "--config.checkpoint_every=10", stages]
  reference, _ = _run(tmp_path / "ref.npz", tmp_path / "ref", 2, *steps)

  workdir = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(tmp_path / "unused.npz", workdir, 2, *steps),
                          env=_env({"TRAIN_DRIVER_SLEEP": "0.15"}), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = workdir / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline:
    if (ckpts / "20").is_dir() and proc.poll() is None:
      break
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "tmp_out.npz").exists()
  assert not (ckpts / "40").exists(), "the run finished before the kill"

  resumed, out = _run(tmp_path / "resumed.npz", workdir, 2, *steps)
  assert "Resumed from step" in out
  assert resumed.keys() == reference.keys()
  for k in reference:
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)


def test_save_on_eight_restore_on_four_and_one(tmp_path):
  # Constant learning rate: the first half runs with total_steps=10, and a cosine schedule
  # would depend on it.
  common = ["--config.checkpoint_every=10", "--config.mesh.data=-1",
            "--config.optimizer.schedule=constant"]
  straight, _ = _run(tmp_path / "straight.npz", tmp_path / "straight", 8,
                     "--config.total_steps=20", *common, "--config.mesh.fsdp=2")
  for devices in (4, 1):
    workdir = tmp_path / f"to{devices}"
    _run(tmp_path / "half.npz", workdir, 8, "--config.total_steps=10", *common,
         "--config.mesh.fsdp=2")
    fsdp = "2" if devices == 4 else "1"
    moved, out = _run(tmp_path / f"moved{devices}.npz", workdir, devices,
                      "--config.total_steps=20", *common, f"--config.mesh.fsdp={fsdp}")
    assert "Resumed from step 10" in out
    _assert_close(moved, straight)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  steps = ["--config.total_steps=10", "--config.checkpoint_every=0"]
  single, _ = _run(tmp_path / "single.npz", tmp_path / "single", 4, *steps)
  port = _free_port()
  procs = []
  for pid in range(2):
    cmd = _cmd(tmp_path / "multi.npz", tmp_path / f"multi{pid}", 2, *steps,
               f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
               f"--process_id={pid}")
    procs.append(subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, o in zip(procs, outputs):
    assert p.returncode == 0, o[-4000:]
  assert "4 devices" in outputs[0]
  multi = dict(np.load(tmp_path / "multi.npz"))
  _assert_close(multi, single)

"""What a user meets first: a clean stop on Ctrl-C / SIGTERM, typed overrides, the log after a
resume, path and input errors, launch commands in the configs, readable plots."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/classification/digits_cnn.py")
SMALL = ["--config.model.width=8", "--config.model.hidden=16", "--config.batch_size=32",
         "--config.eval_batch_size=64", "--config.log_every=5", "--config.eval_every=0",
         "--config.optimizer.warmup_steps=2", "--config.total_steps=30",
         "--config.checkpoint_every=10"]


def _env(extra=None):
  # The runs of one test compile the same programs: the session's persistent cache (conftest)
  # keeps them all, however short their compile time.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("XLA_FLAGS", None)
  env.update(extra or {})
  return env


def _driver(out, workdir):
  return [sys.executable, os.path.join(ROOT, "tests/train_driver.py"), str(out),
          f"--config={CONFIG}", f"--workdir={workdir}", "--cpu_devices=1", *SMALL]


def _interrupt(workdir, wait_for_step: int, signals):
  """Starts the run (slowed), sends `signals` once checkpoint `wait_for_step` exists."""
  proc = subprocess.Popen(_driver(workdir / "unused.npz", workdir),
                          env=_env({"TRAIN_DRIVER_SLEEP": "0.1"}), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 120
  while not (workdir / "checkpoints" / str(wait_for_step)).is_dir():
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  for s in signals:
    proc.send_signal(s)
    time.sleep(0.01)
  out, _ = proc.communicate(timeout=120)
  return proc.returncode, out


def test_sigint_and_sigterm_stop_cleanly_and_resume_bit_identical(tmp_path):
  from ml_pipelines.trainer import preemption
  ref = subprocess.run(_driver(tmp_path / "ref.npz", tmp_path / "ref"), env=_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]

  workdir = tmp_path / "run"
  ckpts = workdir / "checkpoints"
  stops = []
  for wait, sig in ((10, signal.SIGINT), (20, signal.SIGTERM)):
    rc, out = _interrupt(workdir, wait, [sig])
    assert rc == preemption.EXIT_RESUMABLE == 75, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    line = next(l for l in out.splitlines() if l.startswith("stopped at step "))
    step = int(line.split()[3])
    assert line.endswith("run the same command to resume.")
    assert wait <= step < 30 and (ckpts / str(step)).is_dir(), (step, os.listdir(ckpts))
    assert not [p for p in os.listdir(ckpts) if "tmp" in p]
    stops.append(step)
  assert stops[0] < stops[1]

  (ckpts / "25.orbax-checkpoint-tmp-1").mkdir()  # what a save cut short by a second signal leaves
  final = subprocess.run(_driver(tmp_path / "resumed.npz", workdir), env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
  assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
  assert f"Resumed from step {stops[1]}" in final.stdout
  assert not [p for p in os.listdir(ckpts) if "tmp" in p]
  a, b = dict(np.load(tmp_path / "ref.npz")), dict(np.load(tmp_path / "resumed.npz"))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- typed overrides and paths -------------------------------------------------------------------
def _config():
  from ml_pipelines.trainer import config as config_lib
  return config_lib.load(CONFIG)


@pytest.mark.parametrize("assignment, match", [
    ("optimizer.learning_rate=fast", r"--config.optimizer.learning_rate=fast: expected a number"),
    ("total_steps=1.5", r"--config.total_steps=1.5: expected an integer, got 1.5"),
    ("total_steps=True", r"total_steps=True: expected an integer"),
    ("optimizer.nesterov=1", r"optimizer.nesterov=1: expected True or False"),
    ("optimizer.transforms=ogm_ge", r"optimizer.transforms=ogm_ge: expected a tuple"),
    ("sharding_rules=((1, 'fsdp'),)", r"sharding_rules=.*an element: .*expected a string, got 1"),
    ("model=resnet", r"--config.model=resnet: this is a block of keys"),
])
def test_override_of_the_wrong_type_names_the_key(assignment, match):
  from ml_pipelines.trainer import config as config_lib
  c = _config()
  c.optimizer.nesterov = False
  with pytest.raises(config_lib.UsageError, match=match):
    config_lib.override(c, [assignment])


def test_override_accepts_values_of_the_default_type():
  from ml_pipelines.trainer import config as config_lib
  c = _config()
  c.init_from = None
  c = config_lib.override(c, [
      "optimizer.learning_rate=1", "total_steps=7", "data.name=7", "optimizer.transforms=('a',)",
      "sharding_rules=(('kernel$', None), ('bias', 'fsdp'))", "init_from={'path': 'x'}",
      "optimizer.weight_decay_mask=None"])
  assert c.optimizer.learning_rate == 1.0 and isinstance(c.optimizer.learning_rate, float)
  assert c.total_steps == 7 and c.data.name == "7" and c.optimizer.transforms == ("a",)
  assert c.sharding_rules == (("kernel$", None), ("bias", "fsdp"))
  assert c.optimizer.weight_decay_mask is None and c.init_from.path == "x"


def test_command_line_errors_are_one_line_and_create_nothing(tmp_path):
  def run(*argv):
    proc = subprocess.run([sys.executable, "-m", "ml_pipelines.train", f"--config={CONFIG}", *argv],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.stderr.strip()

  workdir = tmp_path / "never"
  assert run(f"--workdir={workdir}", "--config.total_steps=1.5") == (
      "error: --config.total_steps=1.5: expected an integer, got 1.5 (the default is 600).")
  assert not workdir.exists()
  afile = tmp_path / "afile"
  afile.write_text("x")
  assert run(f"--workdir={afile}") == (
      f"error: --workdir={afile} is a file, not a directory; give a directory path.")
  assert run(f"--workdir={afile}/run") == (
      f"error: --workdir={afile}/run cannot be created: {afile} is a file.")


# --- the log after a resume ---------------------------------------------------------------------
def test_metrics_log_agrees_with_the_state_after_a_resume(tmp_path):
  import json
  import shutil
  from ml_pipelines import train
  from tests.test_trainer import small_config

  def rows():
    with open(tmp_path / "metrics.jsonl") as f:
      return [json.loads(l) for l in f]

  config = lambda: small_config(eval_every=10)  # logs at 5, 10, 15, 20; evals at 10, 20
  train.train_and_evaluate(config(), str(tmp_path))
  first = rows()
  shutil.rmtree(tmp_path / "checkpoints" / "20")  # as if killed between steps 10 and 20
  train.train_and_evaluate(config(), str(tmp_path))  # resumes from 10, rewrites 15 and 20
  train.train_and_evaluate(config(), str(tmp_path))  # finished: evaluates step 20 again
  after = rows()
  key = lambda r: (r["step"], tuple(sorted(r)))
  assert [key(r) for r in after] == [key(r) for r in first]  # each row once, in step order
  assert [r["step"] for r in after if "train/loss" in r] == [5, 10, 15, 20]
  assert [r["step"] for r in after if "eval/accuracy" in r] == [10, 20]
  assert after == first  # the resumed steps (15, 20) reproduce the same numbers


# --- a corrupt checkpoint: one warning ---------------------------------------------------------
def test_failed_checkpoint_read_drops_late_event_loop_reports_only():
  import threading
  from ml_pipelines.trainer import checkpoint as checkpoint_lib

  seen, previous = [], sys.unraisablehook
  sys.unraisablehook = lambda report: seen.append(str(report.exc_value))

  def late_reports():  # what tensorstore's in-flight reads do after orbax closed its loop
    for message in ("Event loop is closed", "something else"):
      time.sleep(0.3)
      try:
        raise RuntimeError(message)
      except RuntimeError as e:
        sys.unraisablehook(type("R", (), {"exc_type": RuntimeError, "exc_value": e,
                                          "exc_traceback": None, "err_msg": None,
                                          "object": None})())
  try:
    failed = []
    with checkpoint_lib._quiet_reads(failed):
      threading.Thread(target=late_reports).start()
      failed.append(ValueError("OUT_OF_RANGE"))
    assert seen == ["something else"]  # the probe waited for the late reports, dropped only one
  finally:
    sys.unraisablehook = previous
  assert sys.unraisablehook is previous


# --- compatibility keys, total_steps and warm-up -------------------------------------------------
def test_compatibility_keys_in_both_directions():
  from ml_pipelines.trainer import config as config_lib
  saved = _config()  # cosine schedule: total_steps shapes it
  saved.task = {"name": "hashing", "topk": 100, "plot_dir": "a", "gamma": 200.0}

  def mismatch(**changes):
    now = _config()
    now.task = dict(saved.task)
    for k, v in changes.items():
      node, *path = k.split(".")
      if path:
        now[node][path[0]] = v
      else:
        now[node] = v
    return config_lib.incompatible_keys(saved.to_dict(), now)

  # Cosmetic keys (evaluation and outputs) may change; what shapes the state or the run may not.
  assert mismatch(**{"task.topk": 50, "task.plot_dir": "b", "log_every": 7, "eval_every": 3,
                     "mesh.fsdp": 2, "batch_size": 8, "keep_checkpoints": 1}) == []
  assert mismatch(**{"task.gamma": 1.0}) == ["task.gamma"]
  assert mismatch(**{"model.hidden": 7, "seed": 3}) == ["model.hidden", "seed"]
  assert mismatch(total_steps=700) == ["total_steps"]
  # A constant rate after a fixed warm-up does not depend on total_steps: the run may go on.
  saved.optimizer.schedule = "constant"
  assert mismatch(total_steps=700, **{"optimizer.schedule": "constant"}) == []
  assert mismatch(total_steps=700, **{"optimizer.schedule": "cosine"}) == [
      "optimizer.schedule", "total_steps"]


def test_total_steps_change_on_a_finished_cosine_run_is_refused(tmp_path):
  from ml_pipelines import train
  from ml_pipelines.trainer import checkpoint as checkpoint_lib
  from tests.test_trainer import small_config
  train.train_and_evaluate(small_config(total_steps=10), str(tmp_path))
  with pytest.raises(checkpoint_lib.IncompatibleCheckpointError,
                     match=r"total_steps: checkpoint 10 vs config 12.*learning-rate schedule"):
    train.train_and_evaluate(small_config(total_steps=12), str(tmp_path))


def test_warmup_fraction_scales_with_the_run_and_a_run_inside_warmup_warns():
  import ml_collections
  from optim import chain
  c = ml_collections.ConfigDict(dict(learning_rate=1.0, schedule="constant", warmup_fraction=0.1))
  for total in (30, 300):
    lr = chain.schedule(c, total)
    w = total // 10
    np.testing.assert_allclose([lr(0), lr(1), lr(w), lr(total - 1)], [0.0, 1 / w, 1.0, 1.0],
                               atol=1e-6)
  fixed = ml_collections.ConfigDict(dict(learning_rate=1e-3, schedule="cosine", warmup_steps=110))
  with pytest.warns(chain.WarmupWarning, match=r"warmup_steps=110 >= total_steps=30"):
    chain.schedule(fixed, 30)
  both = ml_collections.ConfigDict(dict(learning_rate=1.0, warmup_steps=3, warmup_fraction=0.1))
  with pytest.raises(ValueError, match="set one of them"):
    chain.schedule(both, 30)


# --- launch commands and --help ------------------------------------------------------------------
def _launch_commands(path):
  import ast
  import re
  doc = ast.get_docstring(ast.parse(open(path).read())) or ""
  joined = re.sub(r"\\\n\s*", " ", doc)
  return [line.strip() for line in joined.splitlines()
          if line.strip().startswith("python -m ml_pipelines.train ")]


CONFIG_FILES = sorted(
    os.path.relpath(os.path.join(d, f), ROOT)
    for d, _, files in os.walk(os.path.join(ROOT, "configs")) for f in files
    if f.endswith(".py") and "def get_config" in open(os.path.join(d, f)).read())


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_config_docstring_has_a_launch_command_that_parses(path, monkeypatch):
  import shlex
  from ml_pipelines import train
  from ml_pipelines.trainer import config as config_lib
  monkeypatch.chdir(ROOT)
  commands = _launch_commands(path)
  assert commands, f"{path}: no 'python -m ml_pipelines.train ...' line in its docstring"
  own = 0
  for command in commands:  # a config may also show the runs it builds on (UMT's teachers)
    argv = shlex.split(command.partition("#")[0])[3:]
    args, overrides = train.parse_args(argv)
    assert args.workdir, command
    own += args.config.partition(":")[0] == path
    config = config_lib.override(config_lib.load(args.config), overrides)
    config_lib.check_keys(config)
    for assignment in overrides:  # each override landed, with the default's type
      key, _, text = assignment.partition("=")
      node = config
      for name in key.split("."):
        node = node[name]
      assert node == config_lib.typed_value(key, text, node), command
  assert own, f"{path}: no launch command of this config"


def test_help_of_the_trainer_and_the_flops_job():
  def help_text(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
  assert "--config.KEY=VALUE" in help_text("ml_pipelines.train")
  start = time.time()
  out = help_text("ml_pipelines.jobs.flops")
  assert "--models" in out and "| model |" not in out and time.time() - start < 30


# --- hash_index input errors --------------------------------------------------------------------
def test_hash_index_bad_inputs_give_one_clear_message_each(tmp_path, capsys):
  from ml_pipelines.search import hash_index
  good = np.where(np.random.default_rng(0).random((20, 16)) > 0.5, 1, -1).astype(np.int8)
  np.savez(tmp_path / "good.npz", codes=good)
  (tmp_path / "zero.npz").write_bytes(b"")
  np.savez(tmp_path / "nocodes.npz", labels=np.arange(3))
  np.savez(tmp_path / "empty.npz", codes=np.zeros((0, 16), np.int8))
  np.savez(tmp_path / "real.npz", codes=np.random.default_rng(0).normal(size=(20, 16)))
  cases = {
      "zero.npz": r"zero.npz is empty \(0 bytes\)",
      "nocodes.npz": r"nocodes.npz has no 'codes' array \(it holds: labels\)",
      "empty.npz": r"empty.npz holds no codes \(shape \(0, 16\)\)",
      "real.npz": r"real.npz: codes must be binary, \{-1,\+1\} or \{0,1\}; found values -?\d",
      "missing.npz": r"missing.npz cannot be read as .npz \(it does not exist\)",
  }
  import re
  for name, message in cases.items():
    with pytest.raises(SystemExit) as exit_info:
      hash_index.main(["build", f"--codes={tmp_path / name}", f"--index={tmp_path / 'ix.npz'}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "ix.npz").exists()
  hash_index.main(["build", f"--codes={tmp_path / 'good.npz'}", f"--index={tmp_path / 'ix.npz'}"])
  for name in ("zero.npz", "real.npz"):  # queries are checked the same way
    with pytest.raises(SystemExit):
      hash_index.main(["query", f"--index={tmp_path / 'ix.npz'}", f"--codes={tmp_path / name}"])
    assert name in capsys.readouterr().err
  with pytest.raises(SystemExit):
    hash_index.main(["query", f"--index={tmp_path / 'zero.npz'}",
                     f"--codes={tmp_path / 'good.npz'}"])
  assert "is not an index written by" in capsys.readouterr().err


# --- curves.png ---------------------------------------------------------------------------------
def test_curves_are_a_grid_with_readable_titles(tmp_path):
  import json
  from PIL import Image
  from ml_pipelines.trainer import metrics_writer
  names = ["train/loss", "train/accuracy", "train/learning_rate", "train/o", "train/audio_loss",
           "train/visual_loss", "train/fused_loss", "train/stage_modality", "train/umt_distill"]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for step in range(10, 1010, 10):
      f.write(json.dumps({"step": step, **{n: 1.0 / step for n in names}}) + "\n")
      if step % 500 == 0:
        f.write(json.dumps({"step": step, "eval/loss": 0.5, "eval/accuracy": 0.9,
                            "eval/audio_accuracy": 0.8, "eval/ema_accuracy": 0.91}) + "\n")
  writer = metrics_writer.MetricsWriter.__new__(metrics_writer.MetricsWriter)
  writer.active, writer.jsonl_path = True, str(tmp_path / "metrics.jsonl")
  writer.plot_path = str(tmp_path / "curves.png")
  writer.plot()
  width, height = Image.open(tmp_path / "curves.png").size
  # 11 panels (train/eval loss and accuracy share one): 4 columns x 3 rows at 100 dpi.
  assert (width, height) == (1440, 840)
  assert metrics_writer.panel_title("o") == "estimator o (1 = STE, larger = closer to sign)"
  assert metrics_writer.panel_title("audio_accuracy") == "audio accuracy (fraction correct)"
  assert metrics_writer.panel_title("ema_loss") == "EMA loss (cross-entropy, nats)"
  assert metrics_writer.panel_title("learning_rate") == "learning rate"
  assert metrics_writer.panel_title("grad_norm_ratio") == "grad norm ratio"


def test_tensorboard_is_an_extra_of_the_package():
  import tomllib
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert any(d.startswith("tensorboard") for d in extras["viz"])


def test_a_second_signal_exits_at_once():
  script = ("import os, signal, time\n"
            "from ml_pipelines.trainer import preemption\n"
            "stop = preemption.StopOnSignal().install()\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "assert stop.requested(0)\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "time.sleep(5)\n"
            "print('not reached')\n")
  proc = subprocess.run([sys.executable, "-c", script], env=_env(), cwd=ROOT, capture_output=True,
                        text=True, timeout=60)
  assert proc.returncode == 128 + signal.SIGINT == 130, proc.stderr
  assert "not reached" not in proc.stdout and "Second SIGINT: exiting now" in proc.stderr


def test_stop_on_signal_restores_the_previous_handlers():
  from ml_pipelines.trainer import preemption
  before = signal.getsignal(signal.SIGINT)
  left = preemption.StopOnSignal().install()  # a loop that ended by an exception
  stop = preemption.StopOnSignal().install()
  os.kill(os.getpid(), signal.SIGTERM)
  assert stop.requested(1) and stop.signum == signal.SIGTERM and left.signum is None
  stop.uninstall()
  assert signal.getsignal(signal.SIGINT) is before

"""Each deep-hashing method trains a few steps through the trainer on the embedded digits retrieval
set; ADSH's discrete update inside the trainer matches the loss module; a resumed ADSH run continues
exactly (same V, same parameters)."""
import os
import shutil

import jax
import numpy as np
import pytest

from ml_pipelines.trainer import config as config_lib
from ml_pipelines import train
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "hashing")


def _config(method, total_steps=4, outer_steps=2, **task):
  c = config_lib.load(os.path.join(CONFIGS, f"{method}.py") + ":digits,12")
  c.total_steps = total_steps
  c.batch_size = 16
  c.eval_batch_size = 64
  c.log_every = outer_steps
  c.eval_every = 0
  c.checkpoint_every = 0
  c.model.width = 8
  c.task.outer_steps = outer_steps
  for k, v in task.items():
    c.task[k] = v
  return c


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exchnet", "semicon", "dmih", "mch"])
def test_method_trains_through_trainer(method, tmp_path):
  task = {"exchnet": dict(align_start=1), "mch": dict(policy_start=2)}.get(method, {})
  c = _config(method, **task)
  workdir = tmp_path / "run"  # the trainer's workdir is where the plot and the codes go
  out = train.train_and_evaluate(c, str(workdir))
  extra = out["state"]["extra"]
  v = np.asarray(extra["V"])
  assert int(extra["outer"]) == 2
  assert set(np.unique(v)) == {-1.0, 1.0}  # two discrete updates made V binary
  assert not np.asarray(extra["seen"]).any()  # cleared after the last outer iteration
  for key in ("eval/mAP", "eval/precision@r2", "eval/recall@r2"):
    assert 0.0 <= out[key] <= 1.0, (key, out[key])
  assert out["eval/mAP"] > 0.1  # above the random-ranking floor of 10 balanced classes
  assert out["eval/buckets@r2"] >= 1.0
  assert os.path.getsize(workdir / "pr_curve_4.png") > 0
  if method == "dmih":  # the exported codes, indexed and queried through the CLI, give eval's mAP
    from ml_pipelines.search import hash_index
    db = np.load(workdir / "codes" / "database.npz")
    np.testing.assert_array_equal(db["codes"], np.where(v >= 0, 1.0, -1.0))
    hash_index.main(["build", f"--codes={workdir}/codes/database.npz",
                     f"--index={tmp_path}/index.npz"])
    summary = hash_index.query(str(tmp_path / "index.npz"), str(workdir / "codes/queries.npz"),
                               k=len(v), radius=2)
    assert summary["exact_on_checked"]
    np.testing.assert_allclose(summary[f"mAP@{len(v)}"], out["eval/mAP"], rtol=1e-6)
    np.testing.assert_allclose(np.mean(summary["precision@r=2"]), out["eval/precision@r2"],
                               rtol=1e-6)
  if method == "exchnet":  # anchors: per-class means of the features of the last iteration
    anchors = np.asarray(extra["anchors"])
    assert np.all(np.abs(anchors).sum(axis=(1, 2)) > 0)
  if method == "dmih":  # 4 tables of 3 bits probed at radius 2: s = 0, a = 2 -> 3 buckets
    assert out["eval/buckets@r2"] == 3.0
  if method == "mch":
    assert 1.0 <= out["eval/codes_kept"] <= 5.0


@pytest.mark.slow
def test_adsh_trains_and_resume_continues_exactly(tmp_path):
  """ADSH trains (V binary, codes above chance) and a run resumed mid outer iteration ends with the
  same V, U, visited mask and parameters as the uninterrupted run."""
  full, part = tmp_path / "full", tmp_path / "part"
  # The second run compiles the same programs: a persistent cache for this test saves that time.
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    _resume(tmp_path, full, part)
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def _resume(tmp_path, full, part):
  c = _config("adsh", total_steps=4, outer_steps=2)
  c.checkpoint_every = 3  # mid outer iteration: U and the visited mask are in the checkpoint
  a = train.train_and_evaluate(c, str(full))
  assert set(np.unique(np.asarray(a["state"]["extra"]["V"]))) == {-1.0, 1.0}
  assert int(a["state"]["extra"]["outer"]) == 2
  assert a["eval/mAP"] > 0.1 and os.path.exists(full / "pr_curve_4.png")
  # the second run starts from the step-3 checkpoint of the first
  os.makedirs(part / "checkpoints")
  shutil.copytree(full / "checkpoints" / "3", part / "checkpoints" / "3")
  b = train.train_and_evaluate(c, str(part))
  for key in ("V", "U", "seen", "outer"):
    np.testing.assert_array_equal(np.asarray(a["state"]["extra"][key]),
                                  np.asarray(b["state"]["extra"][key]), err_msg=key)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a["state"]["params"], b["state"]["params"])
  assert a["eval/mAP"] == b["eval/mAP"]

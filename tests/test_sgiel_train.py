"""SGIEL through the trainer: paired two-spectrum batches, the EMA teacher as task state with a
bit-exact resume, and the re-ID data checks."""
from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import pytest

from ml_pipelines.data import reid as reid_data


def test_paired_batches_share_identities_and_missing_modality_fails():
  d = reid_data.render_identities(3, 2, seed=0)
  table = reid_data.ArrayTable
  ds = reid_data.paired_dataset(table(d["vis"]), table(d["ir"]), None, "train", "fake")
  for i in range(len(ds.source)):
    rng = np.random.default_rng(i)
    ex = ds.source[i]
    partner = ds.source.pair(ex, rng)
    assert partner["label"] == ex["label"]
    out = ds.preprocess(ex, np.random.default_rng(i))
    assert out["image_ir"].shape == out["image_vis"].shape == (32, 16, 3)
  ir = {k: v[d["ir"]["label"] != 2] for k, v in d["ir"].items()}
  with pytest.raises(ValueError, match=r"visible only \[2\], infrared only \[\]"):
    reid_data.paired_dataset(table(d["vis"]), table(ir), None, "train", "fake")


def _config(total_steps):
  from ml_pipelines.trainer import config as config_lib
  c = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "reid",
                                   "sgiel.py") + ":synthetic")
  c.total_steps, c.batch_size, c.eval_batch_size = total_steps, 8, 32
  c.log_every, c.eval_every, c.checkpoint_every = total_steps, total_steps, 2
  c.data.num_train_ids, c.data.num_test_ids, c.data.per_modality = 4, 4, 4
  c.model.num_classes, c.model.width = 4, 8
  c.task.cutmix_prob, c.task.steps_per_epoch = 0.5, 2
  c.optimizer.warmup_steps = 1
  return c


@pytest.mark.slow
def test_sgiel_trains_and_resumes_exactly_with_the_teacher(tmp_path):
  """4 steps; the teacher starts as the student and moves by the EMA; a run resumed from the
  step-2 checkpoint ends with the same teacher (parameters and BN statistics) and student."""
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    from ml_pipelines import train
    c = _config(4)
    a = train.train_and_evaluate(c, str(tmp_path / "full"))
    teacher = a["state"]["extra"]["teacher"]
    student = a["state"]["params"]
    # the teacher moved towards the student but is not the student
    t, s = np.asarray(teacher["params"]["proj"]), np.asarray(student["proj"])
    assert not np.array_equal(t, s) and np.abs(t - s).max() < 1.0
    # its batch statistics are its own, started from the student's (start_stage), not zeros
    assert np.all(np.asarray(teacher["rest"]["bottleneck"]["var"]) > 0)
    assert not np.array_equal(teacher["rest"]["bottleneck"]["var"],
                              a["state"]["rest"]["bottleneck"]["var"])
    assert 0.0 <= a["eval/mAP"] <= 1.0 and "eval/mINP" in a
    os.makedirs(tmp_path / "part" / "checkpoints")
    shutil.copytree(tmp_path / "full" / "checkpoints" / "2",
                    tmp_path / "part" / "checkpoints" / "2")
    b = train.train_and_evaluate(c, str(tmp_path / "part"))
    jax.tree.map(np.testing.assert_array_equal, a["state"]["extra"], b["state"]["extra"])
    jax.tree.map(np.testing.assert_array_equal, a["state"]["params"], b["state"]["params"])
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])

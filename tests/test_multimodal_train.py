"""Every audio-visual method trains a few steps through the trainer on a tiny av_demo."""
import numpy as np
import pytest

from ml_pipelines import config as config_lib
from ml_pipelines import train

METHODS = ["vanilla", "ogm_ge", "amss", "amss_plus", "agm", "pmr", "mmpareto", "gblending", "mie"]


def tiny(method, fusion="concat"):
  c = config_lib.load(f"configs/multimodal/{method}.py:demo,{fusion}")
  c.total_steps, c.batch_size, c.eval_batch_size = 2, 16, 32
  c.log_every, c.eval_every, c.checkpoint_every = 1, 0, 2
  c.model.width, c.model.depths = 4, (1, 0, 0, 0)
  c.data.update(dict(train_size=48, test_size=32, val_size=32, freq=8, time=8, size=8))
  if method == "gblending":  # re-estimate after every step (two estimates in two steps)
    c.task.gblending_every = 1
  if method == "mie":
    c.task.mie_stage_steps = c.optimizer.mie.stage_steps = "1,1"
    c.optimizer.mie.collect_steps = 1
  return c


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_through_trainer(method, tmp_path):
  result = train.train_and_evaluate(tiny(method), str(tmp_path))
  assert int(result["state"]["step"]) == 2
  for k in ("eval/accuracy", "eval/audio_accuracy", "eval/visual_accuracy", "eval/loss"):
    assert np.isfinite(result[k]), k


@pytest.mark.slow
def test_umt_distils_from_unimodal_teacher_runs(tmp_path):
  for muted, teacher in (("visual", "audio"), ("audio", "visual")):
    c = tiny("vanilla")
    c.task.mute_modality = muted
    train.train_and_evaluate(c, str(tmp_path / teacher))
  c = tiny("umt")
  c.task.umt_teachers = {m: str(tmp_path / m) for m in ("audio", "visual")}
  result = train.train_and_evaluate(c, str(tmp_path / "umt"))
  assert int(result["state"]["step"]) == 2 and np.isfinite(result["eval/accuracy"])
  # the stored teachers are the unimodal runs' encoders
  from ml_pipelines import checkpoint
  _, visual_run = checkpoint.load_latest_arrays(str(tmp_path / "visual"))
  np.testing.assert_array_equal(
      np.asarray(result["state"]["extra"]["umt"]["visual"]["params"]["conv1"]["kernel"]),
      visual_run["params"]["visual_encoder"]["conv1"]["kernel"])

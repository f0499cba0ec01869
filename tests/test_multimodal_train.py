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
  c.data.update(dict(train_size=48, test_size=32, freq=8, time=8, size=8))
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

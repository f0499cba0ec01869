"""Every audio-visual method trains a few steps through the trainer on a tiny av_demo and on a fake
CREMA-D raw directory prepared to ArrayRecord by `prep_av` (full 257 x 188 spectrograms)."""
import os

import numpy as np
import pytest

from ml_pipelines.trainer import config as config_lib
from ml_pipelines.prep import av as prep_av
from ml_pipelines import train
from test_multimodal_prep import _fake_crema

METHODS = ["vanilla", "ogm_ge", "amss", "amss_plus", "agm", "pmr", "mmpareto", "gblending", "mie"]
DATASETS = ["demo", "cremad"]


@pytest.fixture(scope="module")
def cremad_records(tmp_path_factory):
  root = tmp_path_factory.mktemp("crema_d")
  clips = _fake_crema(root / "raw", n=12)
  for split, part in (("train", clips[:8]), ("test", clips[8:])):
    with open(root / f"{split}.csv", "w") as f:
      f.writelines(f"{c},{c.split('_')[2]}\n" for c in part)
  prep_av.prepare("crema_d", str(root / "raw"), str(root / "records"),
                  train_list=str(root / "train.csv"), test_list=str(root / "test.csv"),
                  image_size=16)
  return str(root / "records")


def tiny(method, fusion="concat", dataset="demo", data_dir=None):
  c = config_lib.load(f"configs/multimodal/{method}.py:{dataset},{fusion}")
  c.total_steps, c.batch_size, c.eval_batch_size = 2, 16, 32
  c.log_every, c.eval_every, c.checkpoint_every = 1, 0, 2
  c.model.name, c.model.width, c.model.depths = "av_small", 4, (1, 0, 0, 0)
  if dataset == "demo":
    c.data.update(dict(train_size=48, test_size=32, val_size=32, freq=8, time=8, size=8))
  else:
    c.data.data_dir = data_dir
    c.batch_size, c.eval_batch_size = 8, 8
  if method == "gblending":  # re-estimate after every step (two estimates in two steps)
    c.task.gblending_every = 1
  if method == "mie":
    c.task.mie_stage_steps = c.optimizer.mie.stage_steps = "1,1"
    c.optimizer.mie.collect_steps = 1
  return c


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_through_trainer(method, dataset, tmp_path, request):
  data_dir = request.getfixturevalue("cremad_records") if dataset == "cremad" else None
  result = train.train_and_evaluate(tiny(method, dataset=dataset, data_dir=data_dir),
                                    str(tmp_path))
  assert int(result["state"]["step"]) == 2
  for k in ("eval/accuracy", "eval/audio_accuracy", "eval/visual_accuracy", "eval/loss"):
    assert np.isfinite(result[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_umt_distils_from_unimodal_teacher_runs(dataset, tmp_path, request):
  data_dir = request.getfixturevalue("cremad_records") if dataset == "cremad" else None
  for muted, teacher in (("visual", "audio"), ("audio", "visual")):
    c = tiny("vanilla", dataset=dataset, data_dir=data_dir)
    c.task.mute_modality = muted
    train.train_and_evaluate(c, str(tmp_path / teacher))
  c = tiny("umt", dataset=dataset, data_dir=data_dir)
  rel = os.path.relpath(tmp_path)  # relative paths, as the demo passes them
  c.task.umt_teachers = {m: os.path.join(rel, m) for m in ("audio", "visual")}
  result = train.train_and_evaluate(c, str(tmp_path / "umt"))
  assert int(result["state"]["step"]) == 2 and np.isfinite(result["eval/accuracy"])
  # the stored teachers are the unimodal runs' encoders
  from ml_pipelines.trainer import checkpoint
  _, visual_run = checkpoint.load_latest_arrays(str(tmp_path / "visual"))
  np.testing.assert_array_equal(
      np.asarray(result["state"]["extra"]["umt"]["visual"]["params"]["conv1"]["kernel"]),
      visual_run["params"]["visual_encoder"]["conv1"]["kernel"])

"""Every audio-visual method trains a few steps through the trainer on a tiny av_demo and on a fake
CREMA-D raw directory prepared to ArrayRecord by `prep_av` (full 257 x 188 spectrograms).

The training split is exactly one batch (av_demo train_size 16; CREMA-D's 10 training records less
a 20% held-out `val`), so both steps see the same examples and the training loss of step 2 (after
one update) must be below that of step 1 for every method whose objective is fixed over the two
steps; MIE must train the audio stage first and the visual stage second."""
import json
import os

import jax
import numpy as np
import pytest

from ml_pipelines import data
from ml_pipelines.trainer import config as config_lib
from ml_pipelines.prep import av as prep_av
from ml_pipelines import train
from test_multimodal_prep import _fake_crema

METHODS = ["vanilla", "ogm_ge", "amss", "amss_plus", "agm", "pmr", "mmpareto", "gblending", "mie"]
DATASETS = ["demo", "cremad"]


@pytest.fixture(scope="module")
def cremad_records(tmp_path_factory):
  root = tmp_path_factory.mktemp("crema_d")
  clips = _fake_crema(root / "raw", n=14)
  for split, part in (("train", clips[:10]), ("test", clips[10:])):
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
    c.data.update(dict(train_size=16, test_size=32, val_size=32, freq=8, time=8, size=8))
  else:  # 8 of the 10 training records train (one batch), 2 are the held-out val
    c.data.update(data_dir=data_dir, val_fraction=0.2)
    c.batch_size, c.eval_batch_size = 8, 8
  if method == "gblending":  # re-estimate after every step (two estimates in two steps)
    c.task.gblending_every = 1
  if method == "mie":  # one step per stage: audio, then visual (projected by audio's moments)
    c.stages = tuple({**dict(s), "steps": 1} for s in c.stages[:2])
    c.task.mie_collect_steps = 1
  return c


def train_records(workdir):
  """The per-step training metrics the trainer logged (log_every=1), in step order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r for r in rows if "train/loss" in r]


def check_trained(method, workdir, state=None):
  rows = train_records(workdir)
  assert [r["step"] for r in rows] == [1, 2]
  if method == "mie":  # one step per stage: audio first, then visual
    assert [r["train/stage_modality"] for r in rows] == [0.0, 1.0]
    if state is not None:  # the visual stage projects with audio's collected input moments
      from optim import mie
      params, _ = train.Env.variables(state)
      groups = {"audio": "audio_(encoder|head)/", "visual": "visual_(encoder|head)/"}
      want = mie.stage_projectors(state["extra"]["mie"]["moments"], params, groups, "visual", 0.4)
      got = state["extra"]["mie"]["proj"]
      for q, p in want.items():
        np.testing.assert_allclose(np.asarray(got[q]), np.asarray(p), atol=1e-5, err_msg=q)
      first = np.asarray(got["visual_head/layers/0/kernel"])
      assert not np.allclose(first, np.eye(first.shape[0]), atol=1e-3)
  else:  # the same batch twice: one update lowers its loss
    assert rows[1]["train/loss"] < rows[0]["train/loss"], rows


@pytest.mark.slow
@pytest.mark.parametrize("method,dataset", [  # G-Blending on CREMA-D: the held-out test below
    (m, d) for d in DATASETS for m in METHODS if (m, d) != ("gblending", "cremad")])
def test_method_trains_through_trainer(method, dataset, tmp_path, request):
  data_dir = request.getfixturevalue("cremad_records") if dataset == "cremad" else None
  result = train.train_and_evaluate(tiny(method, dataset=dataset, data_dir=data_dir),
                                    str(tmp_path))
  check_trained(method, tmp_path, result["state"])


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
  check_trained("umt", tmp_path / "umt")
  # the stored teachers are the unimodal runs' encoders
  from ml_pipelines.trainer import checkpoint
  _, visual_run = checkpoint.load_latest_arrays(str(tmp_path / "visual"))
  np.testing.assert_array_equal(
      np.asarray(result["state"]["extra"]["umt"]["visual"]["params"]["conv1"]["kernel"]),
      visual_run["params"]["visual_encoder"]["conv1"]["kernel"])


def test_holdout_rows_are_seeded_disjoint_and_cover_train():
  from ml_pipelines.data import holdout
  train_rows, val_rows = holdout.rows(101, 0.1, seed=3)
  assert len(val_rows) == 10 and not set(train_rows) & set(val_rows)
  np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, val_rows])), np.arange(101))
  again = holdout.rows(101, 0.1, seed=3)
  np.testing.assert_array_equal(again[1], val_rows)
  assert not np.array_equal(holdout.rows(101, 0.1, seed=4)[1], val_rows)


@pytest.mark.slow
def test_gblending_estimates_on_val_carved_from_train_and_never_reads_test(
    cremad_records, tmp_path, monkeypatch):
  """CREMA-D G-Blending: `val` is a seeded part of the training records, the examples trained on
  are the rest, the weights' held-out losses are those of `val`, and the test split is read only
  by the evaluation (a guarded record source raises anywhere else)."""
  from flax import nnx
  import models
  from ml_pipelines.data import records
  from ml_pipelines.tasks import multimodal

  reads, evaluating = [], [False]

  class Guarded(records.RecordSource):
    def __init__(self, directory, split, prepare_hint=""):
      super().__init__(directory, split, prepare_hint)
      self.split = split

    def __getitem__(self, i):
      if self.split == "test" and not evaluating[0]:
        raise AssertionError("the test split was read outside the evaluation")
      reads.append((self.split, id(self), int(i)))
      return super().__getitem__(i)

  evaluate = multimodal.Multimodal.evaluate

  def guarded_evaluate(self, env, state):
    evaluating[0] = True
    try:
      return evaluate(self, env, state)
    finally:
      evaluating[0] = False
  monkeypatch.setattr(records, "RecordSource", Guarded)
  monkeypatch.setattr(multimodal.Multimodal, "evaluate", guarded_evaluate)

  c = tiny("gblending", dataset="cremad", data_dir=cremad_records)
  assert c.task.gblending_val_split == "val"
  assert config_lib.load("configs/multimodal/gblending.py:cremad,concat").data.val_fraction > 0
  assert c.data.val_fraction == 0.2  # 10 records: 8 train, 2 val
  result = train.train_and_evaluate(c, str(tmp_path))
  check_trained("gblending", tmp_path)
  assert any(split == "test" for split, _, _ in reads)  # the evaluation did read it

  train_ds = data.get("crema_d")(c.data, "train")
  val_ds = data.get("crema_d")(c.data, "val")
  train_rows, val_rows = set(train_ds.source.rows), set(val_ds.source.rows)
  assert len(train_rows) == 8 and len(val_rows) == 2 and not train_rows & val_rows
  np.testing.assert_array_equal(data.get("crema_d")(c.data, "val").source.rows,
                                sorted(val_rows))  # deterministic in val_seed
  # the record instances the trainer opened: training reads stay in the training rows
  by_instance = {}
  for split, inst, i in reads:
    by_instance.setdefault(inst, set()).add(i)
  opened = [rows for rows in by_instance.values() if rows & val_rows]
  assert opened and all(rows <= val_rows for rows in opened)  # the val source reads only val rows
  assert any(rows == train_rows for rows in by_instance.values())

  # the stored held-out losses are the heads' mean CE over the val rows with the final weights
  state = result["state"]
  model = models.build(c.model, seed=c.seed)
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  nnx.replace_by_pure_dict(params, jax.tree_util.tree_map(np.asarray, state["params"]))
  nnx.replace_by_pure_dict(rest, jax.tree_util.tree_map(np.asarray, state["rest"]))
  model = nnx.merge(graphdef, params, rest)
  task = multimodal.Multimodal(c)
  for split, ds in (("val", val_ds), ("train", train_ds)):
    batch = {k: np.stack([ds.eval_preprocess(ds.source[i])[k] for i in range(len(ds.source))])
             for k in ("audio", "visual", "label")}
    out = task.head_losses(model, batch)
    want = [float(np.mean(out[f"{k}_ce"])) for k in ("audio", "visual", "fused")]
    np.testing.assert_allclose(np.asarray(state["extra"]["gblend"][split]), want, rtol=1e-4,
                               atol=1e-5, err_msg=split)

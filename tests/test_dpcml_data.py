"""DPCML data: the official users.dat and GroupLens ratings.dat layouts on tiny fakes, negatives
outside the training items, the no-training-items refusal, and a config trained on the generated
multi-interest set beating random ranking."""
import os

import numpy as np
import pytest

from ml_pipelines import train
from ml_pipelines.data import recsys
from ml_pipelines.trainer import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_users_dat_split_and_negatives(tmp_path):
  rng = np.random.default_rng(0)
  lines = []
  for _ in range(6):
    items = rng.choice(20, rng.integers(5, 11), replace=False)
    lines.append(" ".join(map(str, [len(items), *items])))
  lines.append("3 1 2 3")  # fewer than 5 interactions: dropped as the official loader does
  (tmp_path / "users.dat").write_text("\n".join(lines) + "\n")
  options = {"data_dir": str(tmp_path), "num_negatives": 4, "triplets_per_pair": 2}
  train_ds = recsys.users_dat(options, "train")
  test_ds = recsys.users_dat(options, "test")
  per_user = recsys.read_users_dat(str(tmp_path / "users.dat"))
  assert train_ds.info["num_users"] == 6 and train_ds.info["num_items"] == 20
  mask, test_mask = train_ds.info["train_mask"], test_ds.info["test_mask"]
  for u in range(6):
    n = len(per_user[u])
    assert mask[u].sum() == round(0.6 * n) and not (mask[u] & test_mask[u]).any()
    assert set(np.flatnonzero(mask[u] | test_mask[u])) <= set(per_user[u].tolist())
  assert len(train_ds.source) == 2 * mask.sum()
  gen = np.random.default_rng(1)
  for i in range(0, len(train_ds.source), 3):
    ex = train_ds.preprocess(train_ds.source[i], gen)
    assert ex["neg"].shape == (4,) and not mask[ex["user"], ex["neg"]].any()
    assert mask[ex["user"], ex["pos"]]


def test_ratings_dat_keeps_ratings_of_four_and_up(tmp_path):
  rows = [(1, 10, 5), (1, 11, 3), (1, 12, 4), (2, 10, 4), (1, 13, 4), (1, 14, 5), (1, 15, 4)]
  (tmp_path / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::0\n" for u, m, r in rows))
  per_user, num_items = recsys.read_ratings_dat(str(tmp_path / "ratings.dat"), 4)
  assert num_items == 16
  assert [sorted(x.tolist()) for x in per_user] == [[10, 12, 13, 14, 15], [10]]


def test_a_user_without_training_items_is_refused(tmp_path):
  (tmp_path / "users.dat").write_text("2 0 1\n0\n")
  with pytest.raises(ValueError, match="User 1 has no training items"):
    recsys.users_dat({"data_dir": str(tmp_path), "min_interactions": 0}, "train")


def test_dpcml_config_learns_the_generated_multi_interest_users(tmp_path):
  c = config_lib.load(os.path.join(ROOT, "configs/recsys/dpcml.py") + ":multi_interest,dpcml2")
  for k, v in {"data.num_users": 256, "data.num_items": 200, "model.num_users": 256,
               "model.num_items": 200, "model.dim": 16, "total_steps": 150, "eval_every": 0,
               "checkpoint_every": 0, "eval_batch_size": 64,
               "optimizer.learning_rate": 0.01}.items():
    config_lib.override(c, [f"{k}={v!r}"])
  result = train.train_and_evaluate(c, str(tmp_path))
  val = recsys.multi_interest_set(c.data, "val")
  held, train_mask = val.info["test_mask"], val.info["train_mask"]
  chance = np.mean(held.sum(1) / (~train_mask).sum(1))  # P@k of a random ranking
  assert result["eval/P@5"] > 2 * chance, (result["eval/P@5"], chance)

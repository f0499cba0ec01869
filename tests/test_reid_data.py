"""SYSU-MM01 and RegDB builders on fakes in the official layouts: the query list and the gallery
draws of every trial equal the official `data_manager.py` output (fixture), training pairs carry
their shape maps and relabelled identities, and an identity missing from one modality fails."""
from __future__ import annotations

import json
import os
import sys

import ml_collections
import numpy as np
import pytest

from ml_pipelines import data

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "sgiel")
sys.path.insert(0, FIXTURES)
import fake_sysu  # noqa: E402


def _config(root, **kw):
  return ml_collections.ConfigDict(dict(name="sysu_mm01", data_dir=str(root),
                                        shape_dir=str(root) + "_shape", image_size=(24, 12), **kw))


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_sysu_query_and_gallery_trials_match_official(tmp_path, mode):
  root = tmp_path / "SYSU-MM01"
  fake_sysu.write(str(root))
  with open(os.path.join(FIXTURES, "sysu_protocol.json")) as f:
    ref = json.load(f)
  for trial in range(3):
    ds = data.get("sysu_mm01")(_config(root, search_mode=mode, trial=trial), "test")
    rows = [(os.path.relpath(r["path"], root), r["label"], r["camera"], r["query"])
            for r in ds.source.rows]
    gallery = [tuple(g) + (0,) for g in ref[f"gallery_{mode}_{trial}"]]
    query = [tuple(q) + (1,) for q in ref["query"]]
    assert rows == gallery + query
  ex = ds.eval_preprocess(ds.source[0])
  assert ex["image"].shape == (24, 12, 3) and ex["query"] == 0


def test_sysu_training_pairs_and_missing_modality(tmp_path):
  root = tmp_path / "SYSU-MM01"
  fake_sysu.write(str(root), str(root) + "_shape")
  ds = data.get("sysu_mm01")(_config(root), "train")
  assert sorted(set(ds.source.vis.labels.tolist())) == [0, 1, 2, 3]  # ids 1, 2, 4, 5 relabelled
  ex = ds.preprocess(ds.source[3], np.random.default_rng(0))
  assert ex["image_vis"].shape == ex["shape_ir"].shape == (24, 12, 3)
  assert ex["label"] == ds.source.vis.labels[3]
  bad = tmp_path / "bad" / "SYSU-MM01"
  fake_sysu.write(str(bad), str(bad) + "_shape", drop_infrared_of=4)
  with pytest.raises(ValueError, match=r"visible only \[2\]"):  # id 4 is relabelled 2
    data.get("sysu_mm01")(_config(bad), "train")


def test_regdb_lists_and_directions(tmp_path):
  """RegDB's idx lists: training pairs with shape maps and relabelled ids; the test split's query
  side follows `direction`."""
  from PIL import Image
  rng = np.random.default_rng(0)
  os.makedirs(tmp_path / "idx")
  for split, ids in (("train", (3, 8)), ("test", (5, 9))):
    for kind, folder in (("visible", "Visible"), ("thermal", "Thermal")):
      lines = []
      for pid in ids:
        for k in range(2):
          rel = f"{folder}/{pid}/{kind}_{k}.bmp"
          os.makedirs(tmp_path / folder / str(pid), exist_ok=True)
          Image.fromarray(rng.integers(0, 255, (20, 10, 3), dtype=np.uint8)).save(tmp_path / rel)
          os.makedirs(tmp_path / "shape" / folder / str(pid), exist_ok=True)
          Image.fromarray(rng.integers(0, 255, (20, 10), dtype=np.uint8)).save(
              tmp_path / "shape" / rel.replace(".bmp", ".png"))
          lines.append(f"{rel} {pid}")
      (tmp_path / "idx" / f"{split}_{kind}_1.txt").write_text("\n".join(lines) + "\n")
  cfg = ml_collections.ConfigDict(dict(name="regdb", data_dir=str(tmp_path),
                                       shape_dir=str(tmp_path / "shape"), image_size=(20, 10)))
  ds = data.get("regdb")(cfg, "train")
  assert ds.source.vis.labels.tolist() == [0, 0, 1, 1] == ds.source.ir.labels.tolist()
  ex = ds.preprocess(ds.source[2], np.random.default_rng(0))
  assert ex["label"] == 1 and ex["shape_ir"].shape == (20, 10, 3)
  for direction, query_modality in (("t2v", 1), ("v2t", 0)):
    cfg.direction = direction
    rows = data.get("regdb")(cfg, "test").source.rows
    assert all(r["query"] == int(r["modality"] == query_modality) for r in rows)
    assert sorted({r["label"] for r in rows}) == [5, 9]

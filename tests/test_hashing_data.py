"""prep_hashing writes list-format and re-ID folders to ArrayRecord that `hashing_records` reads back
with the right labels; missing data names the prepare command."""
import ml_collections
import numpy as np
import pytest
from PIL import Image

from ml_pipelines.prep import hashing as prep_hashing
from ml_pipelines.data import hashing_data


def _png(path, value):
  Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(path)


def test_list_format_round_trip(tmp_path):
  src = tmp_path / "images"
  src.mkdir()
  for i in range(3):
    _png(src / f"{i}.png", 40 * i)
  (tmp_path / "db.txt").write_text("0.png 1 0 1\n1.png 0 1 0\n")
  (tmp_path / "q.txt").write_text("2.png 0 0 1\n")
  out = tmp_path / "out"
  prep_hashing.main(["--format=list", f"--source_dir={src}", f"--out_dir={out}",
                     f"--database_list={tmp_path / 'db.txt'}", f"--query_list={tmp_path / 'q.txt'}",
                     "--image_size=4"])
  cfg = ml_collections.ConfigDict(dict(data_dir=str(out), image_size=4))
  db = hashing_data.hashing_records(cfg, "database")
  np.testing.assert_array_equal(db.info["labels"], [[1, 0, 1], [0, 1, 0]])
  ex = db.source[1]
  assert ex["image"].shape == (4, 4, 3) and int(ex["image"][0, 0, 0]) == 40
  np.testing.assert_array_equal(ex["labels"], [0, 1, 0])
  q = hashing_data.hashing_records(cfg, "query")
  img = q.eval_preprocess(q.source[0])["image"]
  np.testing.assert_allclose(img[0, 0], (80 / 255 - np.array([0.485, 0.456, 0.406]))
                             / np.array([0.229, 0.224, 0.225]), rtol=1e-5)


def test_reid_folders(tmp_path):
  names = {"bounding_box_train": ["0002_c1s1_01.jpg", "0007_c2s1_02.jpg", "-1_c1s1_03.jpg"],
           "query": ["0011_c1s1_04.jpg"],
           "bounding_box_test": ["0011_c3s1_05.jpg", "0000_c1s1_06.jpg", "0002_c1s1_07.jpg"]}
  for folder, files in names.items():
    (tmp_path / folder).mkdir()
    for i, f in enumerate(files):
      _png(tmp_path / folder / f, i)
  files = prep_hashing.reid_files(str(tmp_path))
  assert [pid for _, pid in files["database"]] == [2, 7]  # junk -1 dropped
  out = tmp_path / "out"
  prep_hashing.main(["--format=reid", f"--source_dir={tmp_path}", f"--out_dir={out}",
                     "--image_size=4"])
  labels = {s: np.load(out / f"labels_{s}.npy") for s in ("database", "query", "gallery")}
  # identities 2, 7, 11 -> columns 0, 1, 2; distractor 0000 has no label
  np.testing.assert_array_equal(labels["database"], [[1, 0, 0], [0, 1, 0]])
  np.testing.assert_array_equal(labels["query"], [[0, 0, 1]])
  np.testing.assert_array_equal(labels["gallery"], [[0, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_missing_records_name_the_command(tmp_path):
  cfg = ml_collections.ConfigDict(dict(data_dir=str(tmp_path / "nope")))
  with pytest.raises(FileNotFoundError, match=r"ml_pipelines\.prep\.hashing"):
    hashing_data.hashing_records(cfg, "database")

"""`prep.reid_shape_maps` on a tiny SCHP output tree mirroring a fake SYSU-MM01: palette label PNGs
and logits give the body-part indicator / summed part probability (scipy softmax reference), the
SYSU builder reads the written maps as the training pairs' shape maps, and a missing parsing fails
with its path."""
from __future__ import annotations

import os
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image
from scipy.special import softmax

from ml_pipelines import data
from ml_pipelines.prep import reid_shape_maps

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures", "sgiel"))
import fake_sysu  # noqa: E402


def _write_parsings(image_root, parsing_root, rng):
  """Half the images as palette label PNGs, the others as [H, W, 7] logits; returns the expected
  uint8 maps by relative stem."""
  want = {}
  for k, (dirpath, _, files) in enumerate(sorted(os.walk(image_root))):
    for f in sorted(files):
      if not f.endswith(".jpg"):
        continue
      rel = os.path.relpath(os.path.join(dirpath, f[:-4]), image_root)
      os.makedirs(os.path.join(parsing_root, os.path.dirname(rel)), exist_ok=True)
      if k % 2:
        labels = rng.integers(0, 7, (24, 12)).astype(np.uint8)
        img = Image.fromarray(labels, "P")
        img.putpalette(list(rng.integers(0, 256, 768)))
        img.save(os.path.join(parsing_root, rel + ".png"))
        want[rel] = np.where(labels > 0, 255, 0)
      else:
        logits = rng.normal(0, 3, (24, 12, 7)).astype(np.float32)
        np.save(os.path.join(parsing_root, rel + ".npy"), logits)
        want[rel] = np.round(255 * (1 - softmax(logits.astype(np.float64), -1)[..., 0]))
  return want


def test_shape_maps_from_parsings_feed_the_sysu_builder(tmp_path):
  root, parsing, out = tmp_path / "SYSU-MM01", tmp_path / "parsing", tmp_path / "shape"
  fake_sysu.write(str(root))
  want = _write_parsings(root, parsing, np.random.default_rng(0))
  reid_shape_maps.main([f"--parsing_dir={parsing}", f"--out_dir={out}", f"--image_dir={root}"])
  for rel, ref in want.items():
    np.testing.assert_array_equal(np.asarray(Image.open(out / (rel + ".png"))), ref)
  cfg = ml_collections.ConfigDict(dict(name="sysu_mm01", data_dir=str(root), shape_dir=str(out),
                                       image_size=(24, 12)))
  ds = data.get("sysu_mm01")(cfg, "train")
  row = ds.source.vis.rows[0]
  rel = os.path.splitext(os.path.relpath(row["path"], root))[0]
  shape = ds.source.vis[0]["shape"]
  assert shape.shape == (24, 12, 3)
  np.testing.assert_array_equal(shape, np.repeat(want[rel][..., None], 3, -1))
  os.remove(parsing / (rel + (".png" if os.path.exists(parsing / (rel + ".png")) else ".npy")))
  with pytest.raises(FileNotFoundError, match=rf"1 images .*{rel}"):
    reid_shape_maps.main([f"--parsing_dir={parsing}", f"--out_dir={tmp_path / 'x'}",
                          f"--image_dir={root}"])
  with pytest.raises(ValueError, match="part labels up to 6"):
    reid_shape_maps.shape_from_labels(np.full((2, 2), 7))

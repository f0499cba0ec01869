"""SPair-71k keypoint pairs over diffusion features (the GATE correspondence head, Meng et al. 2024,
`correspondence_gate/task-corres.py`): pairs come from the diffusion_hyperfeatures JSON files
(`spair_71k_train.json`, `spair_71k_val-360.json`: source/target paths under `JPEGImages/`,
(x, y) keypoints, the target bounding box), features from one extraction directory per variant
(`ml_pipelines/jobs/diffusion_features.py`, images named by their basename; the `attn` tap, when
present in the first variant, is the attention-map channel group).

`config.data`: `images_dir` (`JPEGImages`, for the original sizes), `train_pairs`, `eval_pairs`
(JSON paths), `feature_dirs`, `output_size` (64: the feature grid the loss uses), `load_size` (512:
the grid of the nearest-neighbour search), `max_points` (keypoints padded to this count).
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from ml_pipelines import data
from ml_pipelines.data import records
from ml_pipelines.data.diffusion_features import PREPARE, image_features
from ml_pipelines.evaluators.correspondence import points_to_idxs


def _features_by_name(directory: str, split: str, size: int):
  with open(os.path.join(directory, "features.json")) as f:
    order = json.load(f)["order"]
  source = records.RecordSource(directory, split, PREPARE)
  out = {}
  for i in range(len(source)):
    e = source[i]
    feats = image_features(e, [k for k in order if k != "attn"], size)
    attn = image_features(e, ["attn"], size) if "attn" in order else np.zeros((size, size, 0))
    out[str(e["name"])] = (feats, attn)
  return out


def rescale(points_yx, old_wh, new_wh):
  """(y, x) points from an image of size (w, h) to another (the official `rescale_points`)."""
  return points_yx * np.array([new_wh[1] / old_wh[1], new_wh[0] / old_wh[0]])


@data.register("spair_pairs")
def spair_pairs(config, split: str) -> data.Dataset:
  pairs_file = config.train_pairs if split == config.train_split else config.eval_pairs
  with open(pairs_file) as f:
    pairs = json.load(f)
  variants = [_features_by_name(d, split, config.output_size) for d in config.feature_dirs]
  k, out_wh, load_wh = config.max_points, (config.output_size,) * 2, (config.load_size,) * 2
  cols = {n: [] for n in ("feats", "attn", "src_idx", "tgt_idx", "valid", "src_load", "tgt_load",
                          "target_size", "bbox")}
  for ann in pairs:
    names = [os.path.basename(ann[f"{s}_path"]) for s in ("source", "target")]
    sizes = [Image.open(os.path.join(config.images_dir, ann[f"{s}_path"])).size
             for s in ("source", "target")]
    src = np.flip(np.asarray(ann["source_points"], float), 1)[:k]  # (x, y) -> (y, x)
    tgt = np.flip(np.asarray(ann["target_points"], float), 1)[:k]
    n = len(src)
    pad = lambda a: np.concatenate([a, np.zeros((k - len(a),) + a.shape[1:], a.dtype)])
    cols["feats"].append(np.stack([np.stack([v[name][0] for v in variants]) for name in names]))
    cols["attn"].append(np.stack([variants[0][name][1] for name in names]))
    cols["src_idx"].append(pad(points_to_idxs(rescale(src, sizes[0], out_wh), out_wh)))
    cols["tgt_idx"].append(pad(points_to_idxs(rescale(tgt, sizes[1], out_wh), out_wh)))
    cols["valid"].append(np.arange(k) < n)
    cols["src_load"].append(pad(rescale(src, sizes[0], load_wh)).astype(np.float32))
    cols["tgt_load"].append(pad(rescale(tgt, sizes[1], load_wh)).astype(np.float32))
    cols["target_size"].append(np.asarray(sizes[1], np.float32))
    cols["bbox"].append(np.asarray(ann["target_bounding_box"], np.float32))
  arrays = {name: np.stack(v) for name, v in cols.items()}
  arrays["feats"] = arrays["feats"].astype(np.float32)
  arrays["attn"] = arrays["attn"].astype(np.float32)
  spec = {name: (a.shape[1:], a.dtype) for name, a in arrays.items()}
  return data.Dataset(source=data.ArraySource(arrays), element_spec=spec,
                      info={"dim": arrays["feats"].shape[-1], "attn_dim": arrays["attn"].shape[-1]})

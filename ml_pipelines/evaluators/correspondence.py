"""Keypoint-correspondence metrics: PCK@alpha (Percentage of Correct Keypoints) as
github.com/Darkbblue/diffusion-content-shift `correspondence_utils.compute_pck` (from
diffusion_hyperfeatures): a predicted point is correct when its distance to the target is at most
alpha * max(image width, height), or alpha * max(box width, height) for the per-box variant."""
from __future__ import annotations

import numpy as np


def pck(predicted: np.ndarray, target: np.ndarray, image_size=None, box=None,
        alpha: float = 0.1) -> np.ndarray:
  """Per-keypoint correctness (bool [N]); points are (y, x); `image_size` (w, h) or `box`
  (left, top, right, bottom)."""
  dist = np.linalg.norm(np.asarray(predicted, float) - np.asarray(target, float), axis=-1)
  if box is not None:
    left, top, right, bottom = box
    return dist <= alpha * max(right - left, bottom - top)
  return dist <= alpha * max(image_size)


def points_to_idxs(points: np.ndarray, load_size) -> np.ndarray:
  """(y, x) points -> flat row-major indices on a (w, h) grid, clipped and rounded (the official
  `points_to_idxs`)."""
  y = np.clip(points[:, 0], 0, load_size[1] - 1)
  x = np.clip(points[:, 1], 0, load_size[0] - 1)
  return (load_size[1] * np.round(y) + np.round(x)).astype(np.int64)

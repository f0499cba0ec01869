"""Text-video retrieval ranks: R@1/5/10, median rank (MdR) and mean rank (MnR) in both directions.

A query's rank is the 1-based position of its best-placed relevant item in the gallery ordered by
decreasing similarity, ties by the smaller gallery index (`ranked.descending_order`). Text to
video: queries are the captions, each relevant to its video. Video to text: queries are the videos,
relevant to every caption of theirs; the best of them counts (CLIP4Clip's multi-sentence protocol,
`tensor_video_to_text_sim` takes the maximum over a video's captions, ArrowLuo/CLIP4Clip
`metrics.py`). R@K is the percentage of queries with rank <= K; MdR and MnR the median and mean
rank (CLIP4Clip's `compute_metrics` on tie-free scores).
"""
from __future__ import annotations

import numpy as np

from ml_pipelines.evaluators import ranked


def ranks(sim: np.ndarray, relevant: np.ndarray) -> np.ndarray:
  """[Q] 1-based rank of each query's first relevant gallery item (`sim`, `relevant` [Q, G])."""
  order = ranked.descending_order(sim)
  hit = np.take_along_axis(np.asarray(relevant, bool), order, axis=1)
  if not hit.any(axis=1).all():
    raise ValueError("every query needs at least one relevant gallery item")
  return np.argmax(hit, axis=1) + 1


def summary(r: np.ndarray, prefix: str) -> dict[str, float]:
  out = {f"{prefix}R@{k}": float(np.mean(r <= k) * 100) for k in (1, 5, 10)}
  out[f"{prefix}MdR"] = float(np.median(r))
  out[f"{prefix}MnR"] = float(np.mean(r))
  return out


def text_video_metrics(sim: np.ndarray, video_index: np.ndarray) -> dict[str, float]:
  """`sim` [captions, videos]; `video_index[q]` the video of caption q. Keys `t2v_R@1`, ...,
  `v2t_MnR`."""
  sim = np.asarray(sim, np.float64)
  relevant = np.arange(sim.shape[1])[None, :] == np.asarray(video_index)[:, None]
  return {**summary(ranks(sim, relevant), "t2v_"), **summary(ranks(sim.T, relevant.T), "v2t_")}

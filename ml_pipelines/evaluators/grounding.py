"""Spatio-temporal video grounding metrics: tIoU, vIoU, m_vIoU and vIoU@R (HC-STVG / VidSTG).

Per video, with frames indexed 0..T-1 of the evaluated (sampled) frames, the ground-truth moment
`[gs, ge)` and the predicted moment `[ps, pe)` (end excluded; TubeDETR's `PostProcessSTVG` adds 1 to
the predicted end frame), as antoyang/TubeDETR `datasets/hcstvg_eval.py`:
- tIoU = |[max(s), min(e))| / (|gt| + |pred| - |inter|), 0 when they do not overlap;
- vIoU = (1 / |S_u|) sum_{t in S_i} IoU(b_t, b*_t), S_i and S_u the frames of the intersection and
  the union of the two moments, IoU over (x0, y0, x1, y1) boxes without the +1 pixel convention;
- gt_vIoU: the mean IoU over the ground-truth frames (the predicted moment ignored).
m_vIoU is the mean vIoU over videos and vIoU@R the fraction of videos with vIoU > R.
`decode_moment` is TubeDETR's moment decoding: the (start, end) maximising log p_s(start) +
log p_e(end) over start < end, padded frames excluded, end returned exclusive (+1).
"""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of matching (x0, y0, x1, y1) boxes [..., 4]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
  wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
  inter = wh[..., 0] * wh[..., 1]
  return inter / (area(a) + area(b) - inter)


def decode_moment(logits: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
  """(start, end exclusive) from start/end logits [T, 2] over the real frames `mask` [T]."""
  logits = np.where(np.asarray(mask)[:, None], np.asarray(logits, np.float64), -np.inf)
  logp = logits - np.logaddexp.reduce(logits, axis=0, keepdims=True)
  t = len(logits)
  score = logp[:, 0][:, None] + logp[:, 1][None, :]
  score = np.where(np.triu(np.ones((t, t), bool), 1), score, -np.inf)
  s, e = np.unravel_index(np.argmax(score), score.shape)
  return int(s), int(e) + 1


def video_metrics(pred_boxes, gt_boxes, pred_moment, gt_moment) -> dict[str, float]:
  """tIoU, vIoU and gt_vIoU of one video; boxes [T, 4] over the evaluated frames, moments
  `(start, end exclusive)` in frame positions."""
  (ps, pe), (gs, ge) = pred_moment, gt_moment
  iou = box_iou(pred_boxes, gt_boxes)
  lo, hi = max(ps, gs), min(pe, ge)
  inter = max(hi - lo, 0)
  union_len = (ge - gs) + (pe - ps) - inter
  tiou = inter / union_len if inter > 0 else 0.0
  union_frames = max(pe, ge) - min(ps, gs)
  viou = float(np.sum(iou[lo:hi])) / max(union_frames, 1) if inter > 0 else 0.0
  gt_viou = float(np.mean(iou[gs:ge])) if ge > gs else 0.0
  return {"tiou": float(tiou), "viou": viou, "gt_viou": gt_viou}


def summary(per_video: list[dict[str, float]], thresholds=(0.3, 0.5)) -> dict[str, float]:
  out = {"m_tIoU": float(np.mean([v["tiou"] for v in per_video])),
         "m_vIoU": float(np.mean([v["viou"] for v in per_video])),
         "gt_vIoU": float(np.mean([v["gt_viou"] for v in per_video]))}
  for r in thresholds:
    out[f"vIoU@{r}"] = float(np.mean([v["viou"] > r for v in per_video]))
  return out

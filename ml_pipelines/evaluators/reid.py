"""Person re-identification: CMC rank-k, mAP and mINP of ranking the gallery by distance per query.

Standard protocol (Market-1501, Zheng et al., ICCV 2015; as coded in torchreid's
``eval_market1501``, KaiyangZhou/deep-person-reid ``torchreid/metrics/rank.py``, and in SGIEL,
jiawei151/SGIEL_VIReID ``eval_metrics.py``, ``eval_regdb`` / ``eval_vcm``):
* the gallery is sorted by increasing distance (ties by the smaller gallery index); gallery samples
  of the query's identity taken by the query's camera are removed ("junk"); without camera ids
  nothing is removed (RegDB, whose queries and gallery come from two different cameras);
* a query whose identity has no remaining gallery sample is skipped; the metrics average over the
  others;
* CMC rank-k = fraction of queries with a correct match among the first k kept gallery samples;
* AP = non-interpolated average precision over the kept list (``ranked.average_precision``);
* INP = (number of correct matches) / (rank of the last one) (Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook", TPAMI 2021); mINP its mean.

``protocol="sysu"`` (SYSU-MM01, Wu et al., ICCV 2017; the authors' evaluation as re-coded in SGIEL's
``eval_sysu``): additionally, for a query of camera 3 every gallery sample of camera 2 is removed,
whatever its identity (cameras 2 and 3 film the same indoor room), and the CMC counts each gallery
identity once: the kept list is reduced to the first occurrence of every identity before ranks are
counted ("we follow the protocol of the author's released code"). mAP and mINP use the full kept
list. SYSU camera ids are 1..6 as in its ``cam1`` .. ``cam6`` folders.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ml_pipelines.evaluators import ranked

_QUERY_CHUNK = 256
PROTOCOLS = ("standard", "sysu")


def _keep(q_pids, q_cams, g_pids_sorted, g_cams_sorted, protocol):
  """``[q, G]`` mask of the gallery samples (in ranked order) that stay in each query's list."""
  if q_cams is None:
    return np.ones(g_pids_sorted.shape, bool)
  junk = (g_pids_sorted == q_pids[:, None]) & (g_cams_sorted == q_cams[:, None])
  if protocol == "sysu":
    junk |= (q_cams[:, None] == 3) & (g_cams_sorted == 2)
  return ~junk


def _first_match_rank_unique_ids(matches, keep, g_ids_sorted, num_ids):
  """1-based rank of the first correct match in the kept list with every identity counted once
  (a large number when there is none)."""
  n, g = matches.shape
  position = np.broadcast_to(np.arange(g), (n, g))
  first_seen = np.full((n, num_ids), g)
  rows = np.broadcast_to(np.arange(n)[:, None], (n, g))
  np.minimum.at(first_seen, (rows[keep], g_ids_sorted[keep]), position[keep])
  first_match = np.where((matches & keep).any(axis=1), np.argmax(matches & keep, axis=1), g)
  return (first_seen < first_match[:, None]).sum(axis=1) + 1


def reid_metrics(distmat, q_pids, g_pids, q_cams=None, g_cams=None, protocol: str = "standard",
                 ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float]:
  """``{"rank-k": CMC at k, "mAP", "mINP"}`` for ``distmat [Q, G]`` (smaller = more similar).

  ``q_cams`` / ``g_cams``: camera ids (both or neither); ``protocol``: "standard" or "sysu" (see the
  module docstring).
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  if (q_cams is None) != (g_cams is None) or (protocol == "sysu" and q_cams is None):
    raise ValueError("give camera ids for both queries and gallery (required by protocol 'sysu')")
  distmat = np.asarray(distmat)
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  g_ids, g_id_index = np.unique(g_pids, return_inverse=True)
  first_ranks, aps, inps = [], [], []
  for s in range(0, len(distmat), _QUERY_CHUNK):
    order = np.argsort(distmat[s:s + _QUERY_CHUNK], axis=1, kind="stable")
    pids = q_pids[s:s + _QUERY_CHUNK]
    cams = None if q_cams is None else np.asarray(q_cams)[s:s + _QUERY_CHUNK]
    keep = _keep(pids, cams, g_pids[order], None if g_cams is None else np.asarray(g_cams)[order],
                 protocol)
    matches = g_pids[order] == pids[:, None]
    rank, hits, relevant = ranked.ranks_and_hits(matches, keep)
    valid = hits[:, -1] > 0
    if protocol == "sysu":
      first = _first_match_rank_unique_ids(matches, keep, g_id_index[order], len(g_ids))
    else:
      first = np.where(relevant, rank, np.iinfo(np.int64).max).min(axis=1)
    last = np.where(relevant, rank, 0).max(axis=1)
    first_ranks.append(first[valid])
    aps.append(ranked.average_precision(matches, keep)[valid])
    inps.append(hits[valid, -1] / last[valid])
  first_ranks = np.concatenate(first_ranks)
  if not len(first_ranks):
    raise ValueError("no query identity appears in the (filtered) gallery")
  out = {f"rank-{k}": float(np.mean(first_ranks <= k)) for k in ranks}
  out.update({"mAP": float(np.concatenate(aps).mean()), "mINP": float(np.concatenate(inps).mean())})
  return out


def mean_over_trials(per_trial: Sequence[dict[str, float]]) -> dict[str, float]:
  """The protocols' reported figure: each metric averaged over the trials (SGIEL's ``testy.py`` sums
  the CMC curves and mAPs of its 10 SYSU-MM01 gallery trials and divides by 10; RegDB's figure is
  the mean over its 10 train/test splits)."""
  return {k: float(np.mean([m[k] for m in per_trial])) for k in per_trial[0]}


def trial_galleries(bits) -> list[np.ndarray]:
  """Boolean gallery masks of trials 0..T-1 from per-gallery-sample bitmasks (bit t: the sample is
  in trial t's gallery; T = the highest bit set)."""
  bits = np.asarray(bits, np.int64)
  return [(bits >> t) & 1 == 1 for t in range(int(bits.max()).bit_length())]


def reid_metrics_trials(distmat, q_pids, g_pids, galleries: Sequence, q_cams=None, g_cams=None,
                        protocol: str = "standard", ranks: Sequence[int] = (1, 5, 10, 20)) -> dict:
  """``{"mean": {metric: mean over trials}, "std": {metric: its standard deviation over trials},
  "trials": [reid_metrics of each trial]}``: trial t ranks
  only the gallery columns ``galleries[t]`` (an index array or a boolean mask over ``g_pids``) of
  ``distmat [Q, G]``; arguments otherwise as ``reid_metrics``."""
  distmat, g_pids = np.asarray(distmat), np.asarray(g_pids)
  per_trial = []
  for cols in galleries:
    cols = np.flatnonzero(cols) if np.asarray(cols).dtype == bool else np.asarray(cols)
    cams = (None, None) if g_cams is None else (q_cams, np.asarray(g_cams)[cols])
    per_trial.append(reid_metrics(distmat[:, cols], q_pids, g_pids[cols], *cams,
                                  protocol=protocol, ranks=ranks))
  std = {k: float(np.std([m[k] for m in per_trial])) for k in per_trial[0]}
  return {"mean": mean_over_trials(per_trial), "std": std, "trials": per_trial}

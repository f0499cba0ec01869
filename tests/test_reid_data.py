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


def _official(mode):
  with open(os.path.join(FIXTURES, "sysu_protocol.json")) as f:
    ref = json.load(f)
  return ref["query"], [ref[f"gallery_{mode}_{t}"] for t in range(10)]


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_sysu_query_and_gallery_trials_match_official(tmp_path, mode):
  """One test split holds the 10 standard galleries: the rows of trial t (bit t) are the official
  `process_gallery_sysu(mode, trial=t)` list, in its order; queries are `process_query_sysu`."""
  root = tmp_path / "SYSU-MM01"
  fake_sysu.write(str(root))
  query, galleries = _official(mode)
  ds = data.get("sysu_mm01")(_config(root, search_mode=mode), "test")
  rows = [(os.path.relpath(r["path"], root), r["label"], r["camera"], r["query"],
           r["gallery_trials"]) for r in ds.source.rows]
  for t, gallery in enumerate(galleries):
    assert [r[:3] for r in rows if r[3] == 0 and r[4] >> t & 1] == [tuple(g) for g in gallery]
  assert [r[:3] for r in rows if r[3] == 1] == [tuple(q) for q in query]
  assert all(r[4] == 0 for r in rows if r[3] == 1)
  assert len({r[0] for r in rows}) == len(rows)  # an image drawn by several trials appears once
  ex = ds.eval_preprocess(ds.source[0])
  assert ex["image"].shape == (24, 12, 3) and ex["query"] == 0


def _brute_force_sysu(dist, q_ids, q_cams, g_ids, g_cams):
  """Per query, the official `eval_sysu` loop (eval_metrics.py): stable ranking, same identity and
  camera removed, camera 2 removed for camera-3 queries, CMC over first occurrences of identities,
  AP and INP over the kept list."""
  r1, aps, inps = [], [], []
  for d, qi, qc in zip(dist, q_ids, q_cams):
    order = np.argsort(d, kind="stable")
    keep = [j for j in order if not ((g_ids[j] == qi and g_cams[j] == qc)
                                     or (qc == 3 and g_cams[j] == 2))]
    ids = [g_ids[j] for j in keep]
    if qi not in ids:
      continue
    unique = [i for n, i in enumerate(ids) if i not in ids[:n]]
    r1.append(unique[0] == qi)
    hits = np.array(ids) == qi
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    aps.append(prec[hits].mean())
    inps.append(hits.sum() / (np.flatnonzero(hits)[-1] + 1))
  return np.mean(r1), np.mean(aps), np.mean(inps)


def test_sysu_mean_over_trials_equals_brute_force(tmp_path):
  """`reid_metrics_trials` on the builder's rows and trial bitmasks equals the official per-trial
  loop over the official gallery lists (random features per image), averaged over the 10 trials."""
  from ml_pipelines.evaluators import reid as reid_eval
  root = tmp_path / "SYSU-MM01"
  fake_sysu.write(str(root))
  query, galleries = _official("all")
  rng = np.random.default_rng(0)
  paths = sorted({q[0] for q in query} | {g[0] for gal in galleries for g in gal})
  feats = dict(zip(paths, rng.standard_normal((len(paths), 4)).round(1)))  # ties happen
  rows = data.get("sysu_mm01")(_config(root), "test").source.rows
  rel = lambda r: os.path.relpath(r["path"], root)  # noqa: E731
  q = [r for r in rows if r["query"]]
  g = [r for r in rows if not r["query"]]
  dist = -np.array([feats[rel(r)] for r in q]) @ np.array([feats[rel(r)] for r in g]).T
  out = reid_eval.reid_metrics_trials(
      dist, [r["label"] for r in q], np.array([r["label"] for r in g]),
      reid_eval.trial_galleries([r["gallery_trials"] for r in g]),
      np.array([r["camera"] for r in q]), np.array([r["camera"] for r in g]), protocol="sysu")
  assert len(out["trials"]) == 10
  ref = []
  qf = np.array([feats[p] for p, _, _ in query])
  for gal in galleries:
    gf = np.array([feats[p] for p, _, _ in gal])
    ref.append(_brute_force_sysu(-qf @ gf.T, [i for _, i, _ in query], [c for _, _, c in query],
                                 [i for _, i, _ in gal], [c for _, _, c in gal]))
  for t, (r1, m_ap, m_inp) in enumerate(ref):
    np.testing.assert_allclose([out["trials"][t][k] for k in ("rank-1", "mAP", "mINP")],
                               [r1, m_ap, m_inp], atol=1e-12)
  np.testing.assert_allclose([out["mean"][k] for k in ("rank-1", "mAP", "mINP")],
                             np.mean(ref, axis=0), atol=1e-12)
  np.testing.assert_allclose([out["std"][k] for k in ("rank-1", "mAP", "mINP")],
                             np.std(ref, axis=0), atol=1e-12)
  assert len({round(m["mAP"], 9) for m in out["trials"]}) > 1  # the trials' galleries differ


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
    assert all(r["query"] == int(r["modality"] == query_modality) == 1 - r["gallery_trials"]
               for r in rows)
    assert sorted({r["label"] for r in rows}) == [5, 9]


def test_regdb_split_switch_and_mean_over_split_runs(tmp_path):
  """`regdb,trial=t,direction=d` selects the split and direction; `jobs.reid_trials` averages the
  last evaluation of each split's run (gallery-trial spreads left out) and refuses unknown
  switches."""
  from ml_pipelines.jobs import reid_trials
  from ml_pipelines.trainer import config as config_lib
  c = config_lib.load("configs/reid/sgiel.py:regdb,trial=3,direction=v2t")
  assert (c.data.name, c.data.trial, c.data.direction, c.task.protocol) == ("regdb", 3, "v2t",
                                                                            "standard")
  with pytest.raises(ValueError, match="not a switch"):
    config_lib.load("configs/reid/sgiel.py:regdb,trial=11")
  values = [(0.5, 0.25), (0.7, 0.45), (0.9, 0.2)]
  for k, (r1, m_ap) in enumerate(values):
    os.makedirs(tmp_path / str(k))
    rows = [{"step": 5, "train/loss": 1.0},
            {"step": 10, "eval/rank-1": 0.1, "eval/mAP": 0.1},
            {"step": 20, "eval/rank-1": r1, "eval/mAP": m_ap, "eval/mAP_std": 9.0}]
    (tmp_path / str(k) / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
  per_run, mean = reid_trials.summary([str(tmp_path / str(k)) for k in range(3)])
  assert per_run[1] == {"rank-1": 0.7, "mAP": 0.45}
  np.testing.assert_allclose([mean["rank-1"], mean["mAP"]], np.mean(values, axis=0))


def test_sgiel_evaluate_averages_the_gallery_trials():
  """`SGIEL.evaluate` on predictions with trial bitmasks: the mean and spread over the trials of
  `reid_metrics` on each trial's gallery (cosine distance, SYSU camera rules)."""
  from ml_pipelines.evaluators import reid as reid_eval
  from ml_pipelines.tasks import reid as reid_task
  rng = np.random.default_rng(0)
  f = rng.standard_normal((14, 3))
  out = {"feature": f / np.linalg.norm(f, axis=1, keepdims=True),
         "label": np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0, 1]),
         "camera": np.array([1, 2, 1, 2, 1, 2, 4, 4, 5, 3, 3, 3, 6, 6]),
         "query": np.array([0] * 9 + [1] * 5),
         "gallery_trials": np.array([1, 2, 3, 2, 1, 2, 2, 1, 3] + [0] * 5)}
  env = type("Env", (), {"predict": lambda self, state, fn, split: out})()
  config = ml_collections.ConfigDict(dict(task=dict(name="sgiel", protocol="sysu"),
                                          data=dict(eval_split="test")))
  got = reid_task.SGIEL(config).evaluate(env, None)
  q, g = out["query"] == 1, out["query"] == 0
  dist = -out["feature"][q] @ out["feature"][g].T
  per = [reid_eval.reid_metrics(dist[:, m], out["label"][q], out["label"][g][m],
                                out["camera"][q], out["camera"][g][m], protocol="sysu",
                                ranks=(1, 10, 20))
         for m in ((out["gallery_trials"][g] & 1) > 0, (out["gallery_trials"][g] & 2) > 0)]
  for k in ("rank-1", "mAP", "mINP"):
    assert got[k] == pytest.approx((per[0][k] + per[1][k]) / 2)
    assert got[k + "_std"] == pytest.approx(abs(per[0][k] - per[1][k]) / 2)
  assert got["mAP_std"] > 0  # the two galleries rank differently

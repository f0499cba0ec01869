"""N² metrics and ogbg-molpcba: OGB's per-task AP / ROC-AUC against scikit-learn, the ROC-AUC of
the binary node tasks, the masked BCE of missing labels, and the TFDS layout read from a tiny
dataset written by the real TFDS builder (tests/fixtures/n2_molpcba/make_fixture.py)."""
import gzip
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ml_pipelines import train
from ml_pipelines.data import graph_sets
from ml_pipelines.evaluators import multitask
from ml_pipelines.tasks import graph as graph_tasks
from ml_pipelines.trainer import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "n2_molpcba")


def _labels_with_gaps(rng, n, t):
  y = rng.integers(0, 2, (n, t)).astype(np.float64)
  y[rng.random((n, t)) < 0.3] = np.nan
  y[:, 0] = np.nan  # never measured
  y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 1.0)  # one class only
  return y


def _ogb_reference(y, s, metric):
  """ogb/graphproppred/evaluate.py `_eval_ap` / `_eval_rocauc` with scikit-learn."""
  values = []
  for t in range(y.shape[1]):
    if np.sum(y[:, t] == 1) > 0 and np.sum(y[:, t] == 0) > 0:
      known = y[:, t] == y[:, t]
      values.append(metric(y[known, t], s[known, t]))
  return sum(values) / len(values)


def test_per_task_metrics_equal_ogbs_evaluator_with_sklearn():
  rng = np.random.default_rng(0)
  y = _labels_with_gaps(rng, 60, 9)
  s = np.round(rng.normal(size=y.shape), 1)  # ties
  np.testing.assert_allclose(multitask.average_precision_over_tasks(y, s),
                             _ogb_reference(y, s, average_precision_score), rtol=1e-12)
  np.testing.assert_allclose(multitask.roc_auc_over_tasks(y, s),
                             _ogb_reference(y, s, roc_auc_score), rtol=1e-12)
  binary = rng.integers(0, 2, 40)
  np.testing.assert_allclose(multitask.roc_auc_over_tasks(binary, s[:40, 2]),
                             roc_auc_score(binary, s[:40, 2]), rtol=1e-12)
  with pytest.raises(ValueError, match="both positive and negative"):
    multitask.average_precision_over_tasks(y[:, :2], s[:, :2])


class _Env:
  """`env.predict` over one in-memory batch."""

  def __init__(self, batch):
    self.batch = batch

  def predict(self, state, fn, split):
    return jax.tree_util.tree_map(np.asarray, fn(state, self.batch))


def _task(name, num_classes, **task):
  c = ml_collections.ConfigDict(dict(
      task=dict(name=name, **task), model=dict(num_classes=num_classes),
      data=dict(eval_split="test")))
  return graph_tasks.GraphMultilabel(c) if name == "graph_multilabel" else \
      graph_tasks.GraphClassification(c)


def test_binary_roc_auc_scores_the_class_1_probability():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(50, 2)).astype(np.float32)
  labels = rng.integers(0, 2, 50).astype(np.int32)
  env = _Env({"label": labels})
  result = _task("graph_classification", 2, metric="roc_auc").evaluate(
      env, lambda batch: jnp.asarray(logits))
  p1 = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
  np.testing.assert_allclose(result["roc_auc"], roc_auc_score(labels, p1), rtol=1e-6)
  np.testing.assert_allclose(result["accuracy"], np.mean(logits.argmax(1) == labels))
  with pytest.raises(ValueError, match="3 classes"):
    _task("graph_classification", 3, metric="roc_auc")
  for name in ("minesweeper", "tolokers", "questions", "amazon_ratings"):
    c = config_lib.load(os.path.join(ROOT, "configs/graph/n2.py") + f":{name},gcn")
    assert c.task.metric == ("accuracy" if name == "amazon_ratings" else "roc_auc"), name


def test_multilabel_loss_leaves_missing_labels_out():
  rng = np.random.default_rng(2)
  labels = _labels_with_gaps(rng, 6, 5).astype(np.float32)
  logits = rng.normal(size=labels.shape).astype(np.float32)
  task = _task("graph_multilabel", 5)

  def loss(z):
    return task.loss(lambda batch: z, {"label": jnp.asarray(labels)}, None, None, 0)[0]
  value, grad = jax.value_and_grad(loss)(jnp.asarray(logits))
  known = ~np.isnan(labels)
  y, z = labels[known], logits[known].astype(np.float64)
  want = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
  np.testing.assert_allclose(value, want, rtol=1e-5)
  assert np.all(np.asarray(grad)[~known] == 0) and np.all(np.isfinite(grad))
  result = task.evaluate(_Env({"label": labels}), lambda batch: jnp.asarray(logits))
  np.testing.assert_allclose(result["loss"], want, rtol=1e-5)
  np.testing.assert_allclose(result["ap"], _ogb_reference(labels, logits, average_precision_score))


def _tfds_dir(tmp_path):
  """The fixture's TFDS directory with its ArrayRecord files unzipped."""
  for root, _, files in os.walk(os.path.join(FIXTURE, "ogbg_molpcba")):
    dst = tmp_path / os.path.relpath(root, FIXTURE)
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
      if name.endswith(".gz"):
        with gzip.open(os.path.join(root, name), "rb") as f:
          (dst / name[:-3]).write_bytes(f.read())
      else:
        shutil.copy(os.path.join(root, name), dst)
  return str(tmp_path)


def test_molpcba_from_tfds_is_padded_graphs_with_bond_sums_and_nan_labels(tmp_path):
  raw = dict(np.load(os.path.join(FIXTURE, "raw.npz")))
  node_start = np.r_[0, np.cumsum(raw["num_nodes"][:, 0])]
  edge_start = np.r_[0, np.cumsum(raw["num_edges"][:, 0])]
  ds = graph_sets.ogbg_molpcba({"data_dir": _tfds_dir(tmp_path), "max_nodes": 10,
                                "max_edges": 24}, "validation")
  assert len(ds.source) == 4
  seen = set()
  for i in range(len(ds.source)):
    ex = ds.source[i]
    for name, (shape, dtype) in ds.element_spec.items():
      assert ex[name].shape == shape and ex[name].dtype == dtype, name
    # TFDS shuffles a split: find the molecule by its labels (NaN-equal)
    (g,) = [g for g in range(12, 16) if np.array_equal(raw["labels"][g], ex["label"],
                                                       equal_nan=True)]
    seen.add(g)
    n = raw["num_nodes"][g, 0]
    edges = raw["edge_index"][edge_start[g]:edge_start[g + 1]]
    bonds = np.ones((n, 3))
    for (a, _), feat in zip(edges, raw["edge_feat"][edge_start[g]:edge_start[g + 1]]):
      bonds[a] += feat
    want_x = np.concatenate([raw["node_feat"][node_start[g]:node_start[g + 1]], bonds], 1)
    np.testing.assert_array_equal(ex["x"][:n], want_x)
    assert not ex["x"][n:].any() and ex["node_mask"].sum() == n
    real = ex["edge_mask"]
    assert set(zip(ex["senders"][real], ex["receivers"][real])) == set(map(tuple, edges))
  assert seen == {12, 13, 14, 15}
  assert np.isnan(ex["label"][0]) and ex["label"][1] == 1
  with pytest.raises(ValueError, match="max_nodes=3"):
    graph_sets.ogbg_molpcba({"data_dir": str(tmp_path), "max_nodes": 3}, "train").source[0]


def test_molpcba_config_trains_from_tfds(tmp_path):
  """The data, task and config path with the cheapest model (the GCN baseline)."""
  c = config_lib.load(os.path.join(ROOT, "configs/graph/n2.py") + ":ogbg_molpcba,gcn")
  for k, v in {"data.data_dir": _tfds_dir(tmp_path), "data.max_nodes": 10, "data.max_edges": 24,
               "model.hidden": (8, 8), "batch_size": 8, "eval_batch_size": 8,
               "total_steps": 3, "eval_every": 0, "checkpoint_every": 0}.items():
    config_lib.override(c, [f"{k}={v!r}"])
  result = train.train_and_evaluate(c, str(tmp_path / "run"))
  # NaN labels leaking into the loss or the metric would make them NaN
  assert np.isfinite(result["eval/loss"]) and 0 < result["eval/ap"] <= 1, result

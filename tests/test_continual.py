"""Class-incremental protocol: class order and task split, herding memory with a fixed budget, the
stage table, and exact resume across herding boundaries (in-process, tiny digits runs)."""
import json

import jax
import numpy as np
import pytest

from ml_pipelines import train
from ml_pipelines.data import continual as protocol
from ml_pipelines.trainer import config as config_lib
from tests.test_trainer import interrupted

BASELINES = "configs/continual/baselines.py"


def test_class_order_is_cl_pytorch_seeded_permutation_and_checked():
  np.random.seed(1993)
  np.testing.assert_array_equal(protocol.class_order(100, 1993), np.random.permutation(100))
  np.testing.assert_array_equal(protocol.class_order(5, None), np.arange(5))
  with pytest.raises(ValueError, match=r"repeated \[1\], missing \[3\]"):
    protocol.check_order([0, 1, 1, 2], 4)
  with pytest.raises(ValueError, match=r"missing \[2\]"):
    protocol.check_order([0, 1, 3], 4)
  assert protocol.task_sizes(100, 50, 10) == [50, 10, 10, 10, 10, 10]
  assert protocol.task_sizes(100, 0, 10) == [10] * 10
  np.testing.assert_array_equal(protocol.task_bounds([2, 3]), [0, 2, 5])
  with pytest.raises(ValueError, match="does not split 10 classes"):
    protocol.task_sizes(10, 0, 3)
  with pytest.raises(ValueError, match="memory of 5 is smaller than the 10 classes"):
    protocol.check_budget(5, 10)


def _herding_reference(vectors, m):
  """iCaRL Alg. 4 written directly: p_k = argmin_x || mu - (x + sum_{j<k} p_j) / k ||."""
  v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  mu, picked = v.mean(0), []
  for k in range(1, m + 1):
    best = min((i for i in range(len(v)) if i not in picked),
               key=lambda i: np.linalg.norm(mu - (v[i] + v[picked].sum(0)) / k))
    picked.append(best)
  return picked


def test_herding_and_memory_quota():
  vectors = np.random.default_rng(0).normal(size=(12, 5))
  assert protocol.herding_select(vectors, 6).tolist() == _herding_reference(vectors, 6)
  assert len(protocol.herding_select(vectors, 50)) == 12  # a class smaller than its quota
  ranks = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
  memory = protocol.pack({0: np.array([2, 0, 1]), 1: np.array([5, 3, 4])}, 6)
  np.testing.assert_array_equal(memory, [2, 0, 1, 5, 3, 4])
  # Two new classes: the quota drops to 6 // 4 = 1, old classes keep their first exemplar.
  new = protocol.updated_memory(memory, ranks, [2, 3], {2: np.array([7, 6]), 3: np.array([9, 8])},
                                6)
  np.testing.assert_array_equal(new, [2, 5, 7, 9, -1, -1])


def small(method: str, **task):
  c = config_lib.load(f"{BASELINES}:{method}")
  with c.task.ignore_type():
    c.task.update(dict(base_classes=6, increment=2, **task))  # B6-Inc2: 3 tasks
  c.model.backbone.width = 8
  stages = tuple(dict(s, steps=4) for s in c.stages[:3])
  c.stages, c.total_steps, c.eval_every = stages, 12, 12
  c.checkpoint_every, c.log_every = 1, 1
  return c


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_icarl_run_memory_and_exact_resume_after_herding_and_mid_task(tmp_path):
  ref = train.train_and_evaluate(small("icarl"), str(tmp_path / "ref"))
  extra = jax.tree_util.tree_map(np.asarray, ref["state"]["extra"])
  # The memory (40) over the 8 classes seen before the last task: quota 5, grouped by class rank.
  order = protocol.class_order(10, 1993)
  from ml_pipelines.data import digits
  labels = np.asarray(digits._arrays("train")["label"])
  ranks = np.argsort(order)[labels]
  mem = extra["memory"]
  quota = small("icarl").task.memory_size // 8
  assert (mem[8 * quota:] == -1).all() and np.bincount(ranks[mem[:8 * quota]]).tolist() == [
      quota] * 8
  # Accuracy rows of tasks 0 and 1 are stored; the report covers all three.
  assert np.isfinite(extra["acc"][0, 0]) and np.isfinite(extra["acc"][1, :2]).all()
  assert np.isnan(extra["acc"][2]).all()
  report = json.load(open(tmp_path / "ref" / "continual.json"))
  np.testing.assert_allclose(np.asarray(report["acc"], float)[:2], extra["acc"][:2], rtol=1e-6)
  assert report["final_average_accuracy"] == pytest.approx(np.mean(report["acc"][2]))
  # Killed right after the herding boundary (newest checkpoint: step 4, saved after the hook that
  # herded, evaluated and snapshotted the teacher): the resumed run ends bit-identical.
  work = tmp_path / "run"
  interrupted(small("icarl"), work, 5)
  res = train.train_and_evaluate(small("icarl"), str(work))
  a = _flat({"v": train.Env.variables(ref["state"])[0], "e": ref["state"]["extra"]})
  b = _flat({"v": train.Env.variables(res["state"])[0], "e": res["state"]["extra"]})
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert res["eval/final_average_accuracy"] == ref["eval/final_average_accuracy"]


def test_bad_inputs_fail_with_one_clear_message(tmp_path):
  c = small("replay", class_order=(0, 1, 2, 3, 4, 5, 6, 7, 8, 8))
  with pytest.raises(ValueError, match=r"repeated \[8\], missing \[9\]"):
    train.train_and_evaluate(c, str(tmp_path / "a"))
  c = small("replay", memory_size=5)
  with pytest.raises(ValueError, match="memory of 5 is smaller than the 10 classes"):
    train.train_and_evaluate(c, str(tmp_path / "b"))


def test_adaptive_kd_trains_its_integration_weights_and_logs_uncertainty(tmp_path):
  c = config_lib.load("configs/continual/adaptive_kd.py:digits")
  c.task.update(dict(base_classes=8, increment=2))  # 2 tasks
  c.model.backbone.width = 8
  c.stages = tuple(dict(s, steps=3) for s in c.stages[:2])
  c.total_steps = c.eval_every = c.checkpoint_every = 6
  c.log_every = 1
  state = train.train_and_evaluate(c, str(tmp_path))["state"]
  w = np.asarray(train.Env.variables(state)[0]["integration"])
  assert w.shape == (3, 3) and np.abs(w).max() > 0  # zeros at init: moved by task 1's loss
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  task1 = [r for r in rows if r.get("step", 0) > 3 and "train/uncertainty" in r]
  assert task1 and all(0.0 <= r["train/uncertainty"] <= 1.0 for r in task1)
  assert all(r["train/kd"] > 0 and r["train/feature"] > 0 for r in task1)

"""ACL against the official code (GiantJun/CL_Pytorch; fixtures made by
tests/fixtures/continual/make_fixtures.py): the adapter forward with saved weights, min-"others"
inference, herding; and exact resume of an ACL run killed right after herding and mid-phase-2."""
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ml_pipelines import train
from ml_pipelines.data import continual as protocol
from ml_pipelines.evaluators import continual as cl_eval
from ml_pipelines.trainer import config as config_lib
from models.acl import Adapter
from tests.test_trainer import interrupted

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "fixtures/continual/acl.npz"))


def _adapter_from_torch(f):
  a = Adapter(8, rngs=nnx.Rngs(0))
  a.conv.kernel.value = jnp.asarray(f["adapter/conv.weight"].transpose(2, 3, 1, 0))
  a.conv.bias.value = jnp.asarray(f["adapter/conv.bias"])
  # PyTorch's transposed conv is the gradient of a conv: flax's (transpose_kernel=False) equals it
  # with the kernel flipped spatially; torch stores [in, out, kh, kw].
  a.conv_t.kernel.value = jnp.asarray(f["adapter/convTransposed.weight"][:, :, ::-1, ::-1]
                                      .transpose(2, 3, 0, 1))
  a.conv_t.bias.value = jnp.asarray(f["adapter/convTransposed.bias"])
  for ours, theirs in ((a.bn1, "bn1"), (a.bn2, "bn2")):
    ours.scale.value = jnp.asarray(f[f"adapter/{theirs}.weight"])
    ours.bias.value = jnp.asarray(f[f"adapter/{theirs}.bias"])
    ours.mean.value = jnp.asarray(f[f"adapter/{theirs}.running_mean"])
    ours.var.value = jnp.asarray(f[f"adapter/{theirs}.running_var"])
  a.alpha.value = jnp.asarray(f["adapter/alpha"])
  return a


def test_adapter_forward_equals_official_special_adapter_v1():
  a = _adapter_from_torch(FIXTURE)
  x = jnp.asarray(FIXTURE["adapter_x"].transpose(0, 2, 3, 1))
  a.eval()
  np.testing.assert_allclose(np.asarray(a(x)).transpose(0, 3, 1, 2), FIXTURE["adapter_eval_out"],
                             rtol=1e-5, atol=1e-5)
  a.train()  # batch statistics (PyTorch normalises with the biased batch variance too)
  np.testing.assert_allclose(np.asarray(a(x)).transpose(0, 3, 1, 2),
                             FIXTURE["adapter_train_out"], rtol=1e-4, atol=1e-4)


def test_min_others_and_herding_equal_official():
  pred, task, conf = cl_eval.min_others_predict(FIXTURE["others_logits"], [2, 2, 2])
  np.testing.assert_array_equal(pred, FIXTURE["others_preds"])
  np.testing.assert_allclose(conf, FIXTURE["others_max_scores"], rtol=1e-5)
  true_task = FIXTURE["others_targets"] // 2
  assert int(np.sum(task == true_task)) == int(FIXTURE["others_task_correct"])
  np.testing.assert_array_equal(protocol.herding_select(FIXTURE["herding_vectors"], 7),
                                FIXTURE["herding_selected"])


def small_acl():
  c = config_lib.load("configs/continual/acl.py:digits")
  c.task.update(dict(base_classes=6, increment=2, memory_size=30))
  c.model.task_sizes = (6, 2, 2)
  c.model.backbone.width = 8
  c.stages = tuple(dict(s, steps=3) for s in c.stages[:5])  # t0 | t1 a, h | t2 a, h
  c.total_steps, c.eval_every, c.checkpoint_every, c.log_every = 15, 15, 1, 1
  c.batch_size = 16
  return c


def test_acl_adapter_copy_and_exact_resume_after_herding_and_mid_phase_2(tmp_path):
  ref = train.train_and_evaluate(small_acl(), str(tmp_path / "ref"))
  assert 0.0 <= ref["eval/task_id_accuracy"] <= 1.0 and "eval/forgetting" in ref
  work = tmp_path / "run"
  # Killed at step 13: the newest checkpoint is step 12, written right after the herding that
  # starts task 2's phase 2; the resumed run continues phase 2 from there.
  interrupted(small_acl(), work, 13)
  res = train.train_and_evaluate(small_acl(), str(work))
  a = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(
      (train.Env.variables(ref["state"]), ref["state"]["extra"]))[0]}
  b = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(
      (train.Env.variables(res["state"]), res["state"]["extra"]))[0]}
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert res["eval/task_id_accuracy"] == ref["eval/task_id_accuracy"]
  # Phase 1 trained adapter 2 from a copy of adapter 1: equal alphas before training would be
  # 0.02; adapter 0 (frozen since task 0) still differs from adapter 2.
  params = train.Env.variables(ref["state"])[0]
  alphas = [float(params["adapters"][0][t]["alpha"][0]) for t in range(3)]
  assert alphas[2] != 0.02 and alphas[0] != alphas[2]

"""The official per-group learning rates of SGIEL (jiawei151/SGIEL_VIReID `train.py`: 0.1 for the
classifiers, BNNecks and projections, 0.01 for the rest) and AUCSeg (mmseg `paramwise_cfg`
`head: lr_mult=10`): the config's `param_groups` split the model's parameters into exactly those
module sets, and the built optimizer moves the fast group by 10x the rate of the rest."""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from flax import nnx

import models
from ml_pipelines.trainer import config as config_lib
from optim import paths
from optim.chain import build_chain

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
CASES = {  # config: (tiny model overrides, fast group, its top-level modules, the others)
    "reid/sgiel.py:sysu": (
        dict(depths=(1, 1, 1, 1), width=8), "heads",
        {"classifier", "classifier_shape", "bottleneck", "bottleneck_ir", "bottleneck_shape",
         "proj", "proj_shape"},
        {"visible", "thermal", "layer1", "layer2", "layer3", "layer4"}),
    "segmentation/aucseg.py:ade20k": (
        dict(backbone=dict(name="resnet18", width=8), channels=8), "head", {"head"},
        {"backbone"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_groups_partition_params_and_scale_the_rate(name):
  overrides, fast, fast_modules, slow_modules = CASES[name]
  c = config_lib.load(os.path.join(CONFIGS, name))
  with c.model.ignore_type():
    c.model.update(overrides)
  model = nnx.eval_shape(lambda: models.build(c.model, seed=0))
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  labels = paths.labels(params, dict(c.optimizer.param_groups), "rest")
  top = {}
  for path, label in zip(jax.tree.leaves(paths.paths(params)), jax.tree.leaves(labels)):
    top.setdefault(label, set()).add(path.split("/")[0])
  assert top == {fast: fast_modules, "rest": slow_modules}
  # two updates with the same small gradient (no clipping, no decay on zero weights): every
  # group's update is its rate times the same optimizer trace (rtol: optax's float32 warm-up
  # ramp, lr - lr (1 - t / T), loses about 1e-4 at t = 1)
  # on one parameter of each top-level module (the groups are path regexes)
  one = {}
  for path, leaf in zip(jax.tree.leaves(paths.paths(params)), jax.tree.leaves(params)):
    one.setdefault(path.split("/")[0], {})["/".join(path.split("/")[1:]) or "w"] = leaf
  labels = paths.labels(one, dict(c.optimizer.param_groups), "rest")
  tx = build_chain(c.optimizer, c.total_steps)

  @jax.jit
  def second_update(grads, params):
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    return updates
  updates = second_update(jax.tree.map(lambda p: np.full(p.shape, 1e-3, p.dtype), one), one)
  up = {lab: np.concatenate([np.ravel(u) for u, l in zip(jax.tree.leaves(updates),
                                                           jax.tree.leaves(labels)) if l == lab])
        for lab in (fast, "rest")}
  assert np.all(up["rest"] < 0)
  np.testing.assert_allclose(up[fast], 10 * up["rest"][0], rtol=1e-3)
  np.testing.assert_allclose(up["rest"], up["rest"][0], rtol=1e-6)

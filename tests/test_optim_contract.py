"""The optax contract of every multimodal transform: jit, inject_hyperparams, dtypes, and state shape
and sharding kept through an update on the 8-device CPU mesh (tests/conftest.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import optim
from ml_pipelines.trainer import sharding
from models import audiovisual
GROUPS = {"audio": "^audio_", "visual": "^visual_"}
B, C = 8, 6

# name -> (options, hyperparameters injected through optax.inject_hyperparams)
CASES = {
    "ogm_ge": ({"alpha": 0.8, "end_step": 100}, ("alpha",)),
    "amss": ({"temperature": 0.2}, ("temperature",)),
    "amss_plus": ({"temperature": 0.2, "bias": 0.1}, ("temperature", "bias")),
    "sam": ({"rho": 0.05, "groups": "audio", "normalize": "group"}, ("rho",)),
    "mie": ({"rho": 0.01, "flat_ratio": 0.3}, ("rho", "flat_ratio")),
    "agm": ({"alpha": 0.1, "end_step": 100}, ("alpha",)),
    "mmpareto": ({"gamma": 1.5}, ("gamma",)),
}


def tree(dtype):
  r = np.random.default_rng(0)
  f = lambda *s: jnp.asarray(r.normal(size=s), dtype)
  return {"audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 8)},
                            "layer1": {"0": {"conv1": {"kernel": f(3, 3, 8, 8)}}},
                            "bn1": {"scale": f(8)}},
          "audio_head": {"fc1": {"kernel": f(8, 4)}},
          "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 8)},
                             "layer1": {"0": {"conv1": {"kernel": f(3, 3, 8, 8)}}}},
          "visual_head": {"fc1": {"kernel": f(8, 4)}},
          "fusion": {"fc_out": {"kernel": f(16, C)}}}


def extra_args(dtype):
  r = np.random.default_rng(1)
  f = lambda *s: jnp.asarray(r.normal(size=s), dtype)
  return dict(
      modality_logits={"audio": f(B, C), "visual": f(B, C) * 3},
      labels=jnp.asarray(r.integers(0, C, size=B), jnp.int32),
      modality_features={"audio": f(B, 16), "visual": f(B, 16)},
      mie_modality=jnp.int32(1),
      mie_projectors={"visual_head/fc1/kernel": jnp.eye(8, dtype=jnp.float32) * 0.5},
      term_grads=None,
      grad_fn=lambda w: jax.tree_util.tree_map(lambda x: 2 * x, w),
      rng=jax.random.PRNGKey(0))


def shard(tree_, mesh):
  def put(x):
    spec = P(None, None, None, "data") if x.ndim == 4 else P()
    return jax.device_put(x, NamedSharding(mesh, spec))
  return jax.tree_util.tree_map(put, tree_)


def _extra(name, dtype, params):
  ex = extra_args(dtype)
  if name == "mmpareto":  # per-modality unimodal-loss gradients, as the task supplies them
    ex["term_grads"] = {m: jax.tree_util.tree_map(lambda x: 0.5 * x, params) for m in GROUPS}
  else:
    del ex["term_grads"]
  return ex


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_contract(name, dtype):
  opts, hypers = CASES[name]
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  params = shard(tree(dtype), mesh)
  grads = shard(jax.tree_util.tree_map(lambda x: (0.1 * x + 0.01).astype(dtype), tree(dtype)), mesh)
  factory = optim.get(name)
  inner = (optax.inject_hyperparams(factory, static_args=tuple(k for k in opts if k not in hypers)
                                    + ("param_groups",))
           if hypers and dtype == jnp.float32 else factory)
  tx = optax.chain(inner(param_groups=GROUPS, **opts), optax.sgd(0.1, momentum=0.9))
  extra = _extra(name, dtype, params)
  # Placed as the trainer places it: each copy of the parameter tree follows the parameters
  # (optax.tree_map_params), the rest is replicated.
  shapes = jax.eval_shape(tx.init, params)
  param_sh = jax.tree_util.tree_map(lambda x: x.sharding, params)
  state0 = jax.jit(tx.init, out_shardings=sharding.optimizer_state_shardings(tx, shapes, param_sh,
                                                                             mesh))(params)
  step = jax.jit(lambda g, s, p, st: tx.update(g, s, p, step=st, **extra))
  state = state0
  for i in range(2):
    updates, state = step(grads, state, params, jnp.int32(i))
  for p, g, u in zip(*(jax.tree_util.tree_leaves(t) for t in (params, grads, updates))):
    assert u.dtype == g.dtype and u.shape == g.shape
    assert np.all(np.isfinite(np.asarray(u, np.float32)))
  for a, b in zip(jax.tree_util.tree_leaves(state0), jax.tree_util.tree_leaves(state)):
    assert a.shape == b.shape and a.dtype == b.dtype
    if hasattr(a, "sharding"):
      assert b.sharding.is_equivalent_to(a.sharding, a.ndim), (name, a.shape, a.sharding, b.sharding)
  if hypers and dtype == jnp.float32:
    assert set(hypers) <= set(state[0].hyperparams)


def test_chain_built_from_a_config():
  """The config route: optim.build chains transforms in config order with their option sub-dicts."""
  import ml_collections
  c = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
      param_groups={"audio": "^audio_", "visual": "^visual_"},
      transforms=("ogm_ge", "amss"), ogm_ge={"alpha": 0.8, "variant": "ogm"},
      amss={"temperature": 0.2, "kernels": audiovisual.MASKED_KERNELS}))
  tx = optim.build(c, total_steps=10)
  params = tree(jnp.float32)
  grads = jax.tree_util.tree_map(lambda x: 0.1 * x, params)
  extra = _extra("amss", jnp.float32, params)
  u, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, step=jnp.int32(0), **extra))(
      grads, tx.init(params), params)
  # Stem conv: only OGM acts (AMSS masks layer convs), so the update is -lr * (k * g + wd * w).
  names = ["audio", "visual"]
  la, lv = (np.asarray(extra["modality_logits"][m], np.float64) for m in names)
  y = np.asarray(extra["labels"])
  sm = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  s = [sm(l)[np.arange(B), y].sum() for l in (la, lv)]
  rho = s[1] / s[0]
  k = (1.0, 1 - np.tanh(0.8 * rho)) if rho > 1 else (1 - np.tanh(0.8 / rho), 1.0)
  for i, m in enumerate(names):
    g = np.asarray(grads[f"{m}_encoder"]["conv1"]["kernel"])
    w = np.asarray(params[f"{m}_encoder"]["conv1"]["kernel"])
    np.testing.assert_allclose(np.asarray(u[f"{m}_encoder"]["conv1"]["kernel"]),
                               -0.1 * (k[i] * g + 1e-4 * w), rtol=1e-4, atol=1e-7)


def test_group_optimizers_clip_the_global_norm_once():
  """With `group_optimizers`, `clip_grad_norm` scales every gradient by max_norm / ||g|| over ALL
  parameters (PyTorch's clip_grad_norm_(model.parameters())), not by each group's own norm."""
  import ml_collections
  from optim.chain import build_chain
  c = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=1.0, momentum=0.0, clip_grad_norm=1.0,
      param_groups={"head": "^head"}, group_optimizers={"head": dict(learning_rate=10.0)}))
  params = {"body": jnp.zeros(2), "head": jnp.zeros(2)}
  grads = {"body": jnp.array([3.0, 0.0]), "head": jnp.array([0.0, 4.0])}
  tx = build_chain(c, 4)
  update, _ = tx.update(grads, tx.init(params), params)
  scale = 1.0 / 5.0  # the global norm is 5; per group it would be 1/3 and 1/4
  np.testing.assert_allclose(update["body"], -1.0 * scale * np.array([3.0, 0.0]), rtol=1e-6)
  np.testing.assert_allclose(update["head"], -10.0 * scale * np.array([0.0, 4.0]), rtol=1e-6)
  c.group_optimizers = {"head": dict(clip_grad_norm=2.0)}
  with pytest.raises(ValueError, match="global norm"):
    build_chain(c, 4)

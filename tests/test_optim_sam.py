"""Subset SAM: rho = 0 is the base step, a quadratic gives the closed form, zero gradients are safe."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim

GROUPS = {"audio": "^audio_encoder/", "visual": "^visual_encoder/"}


def tree(seed):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return {"audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 4)}, "bn": {"scale": f(4)}},
          "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 4)}},
          "fusion": {"fc": {"kernel": f(8, 3)}}}


def quadratic(seed):
  """L(w) = sum_leaf 0.5 * a_leaf * ||w - c_leaf||^2 : grad = a (w - c)."""
  r = np.random.default_rng(seed + 100)
  t = tree(seed)
  a = jax.tree_util.tree_map(lambda x: float(r.uniform(0.5, 3.0)), t)
  c = jax.tree_util.tree_map(lambda x: jnp.asarray(r.normal(size=x.shape), jnp.float32), t)
  grad_fn = lambda w: jax.tree_util.tree_map(lambda ai, wi, ci: ai * (wi - ci), a, w, c)
  return t, a, c, grad_fn


def np_sam(params, a, c, rho, subset, normalize):
  """Closed form: eps = rho g_S / ||g_S|| (norm over subset / group / tensor); g_SAM = a (w + eps - c)."""
  flat = {optim.paths.path_str(p): np.asarray(x, np.float64)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  fa = {optim.paths.path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(a)[0]}
  fc = {optim.paths.path_str(p): np.asarray(x, np.float64)
        for p, x in jax.tree_util.tree_flatten_with_path(c)[0]}
  g = {k: fa[k] * (flat[k] - fc[k]) for k in flat}
  group = lambda k: k.split("_encoder")[0] if "_encoder" in k else "other"
  sel = [k for k in g if not subset or group(k) in subset]
  out = {}
  for k in g:
    if k not in sel:
      eps = 0.0
    else:
      if normalize == "global":
        members = sel
      elif normalize == "group":
        members = [j for j in sel if group(j) == group(k)]
      else:
        members = [k]
      n = np.sqrt(sum(np.sum(g[j] ** 2) for j in members))
      eps = rho * g[k] / n
    out[k] = fa[k] * (flat[k] + eps - fc[k])
  return out


@pytest.mark.parametrize("groups,normalize", [("", "global"), ("audio,visual", "group"),
                                              ("audio", "global"), ("visual", "tensor")])
def test_quadratic_closed_form(groups, normalize):
  params, a, c, grad_fn = quadratic(0)
  tx = optim.get("sam")(param_groups=GROUPS, rho=0.3, groups=groups, normalize=normalize)
  g = grad_fn(params)
  out = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, grad_fn=grad_fn, step=0)[0])(g, params)
  want = np_sam(params, a, c, 0.3, [s for s in groups.split(",") if s], normalize)
  for p, u in jax.tree_util.tree_flatten_with_path(out)[0]:
    k = optim.paths.path_str(p)
    np.testing.assert_allclose(np.asarray(u), want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_rho_zero_is_exactly_the_base_step():
  params, _, _, grad_fn = quadratic(1)
  # A grad_fn that would give something else proves it is not even called.
  other = lambda w: jax.tree_util.tree_map(lambda x: x * 0 + 7.0, w)
  g = grad_fn(params)
  base = optax.sgd(0.1, momentum=0.9)
  for rho_inject in (False, True):
    if rho_inject:
      sam = optax.inject_hyperparams(optim.get("sam"), static_args=("param_groups",))(
          param_groups=GROUPS, rho=0.0)
    else:
      sam = optim.get("sam")(param_groups=GROUPS, rho=0.0)
    tx = optax.chain(sam, base)
    u, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, grad_fn=other, step=0))(g, params)
    ub, _ = base.update(g, base.init(params), params)
    for x, y in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(ub)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_zero_gradients_give_zero_perturbation():
  params = tree(2)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  seen = []
  tx = optim.get("sam")(param_groups=GROUPS, rho=0.5, normalize="group", groups="audio,visual")

  def grad_fn(w):  # returns the point it was evaluated at
    seen.append(1)
    return w
  out = tx.update(zeros, tx.init(params), params, grad_fn=grad_fn)[0]
  assert seen
  for x, y in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # w + 0

"""AGM and MMPareto against NumPy transcriptions of their official training loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim

GROUPS3 = {"audio": "^audio_", "text": "^text_", "visual": "^visual_"}


def tree(seed, names=("audio", "visual")):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  t = {f"{m}_encoder": {"conv": {"kernel": f(3, 3, 2, 4)}, "bn": {"scale": f(4)}} for m in names}
  t["fusion"] = {"fc": {"kernel": f(8, 5)}}
  return t


def np_log_p(logits, y):
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  return -np.log(np.maximum(p[np.arange(len(y)), y], 1e-8))


@pytest.mark.parametrize("names", [("audio", "visual"), ("audio", "text", "visual")])
def test_agm_matches_numpy_over_steps(names):
  groups = {m: f"^{m}_" for m in names}
  grads = tree(0, names)
  tx = optim.get("agm")(param_groups=groups, alpha=0.1, clip=7.0 if len(names) == 3 else 10.0)
  upd = jax.jit(lambda g, s, lg, y, st: tx.update(g, s, None, modality_logits=lg, labels=y, step=st))
  state = tx.init(grads)
  r = np.random.default_rng(1)
  running = {m: 0.0 for m in names}
  for it in range(1, 5):
    y = r.integers(0, 5, size=8)
    logits = {m: (r.normal(size=(8, 5)) * (1 + i)).astype(np.float32) for i, m in enumerate(names)}
    logits[names[0]][np.arange(8), y] += 30.0  # p(y) -> 1 for one, tiny p elsewhere exercises the clamp
    s = {m: np_log_p(logits[m].astype(np.float64), y).mean() for m in names}
    m_ = len(names)
    mean_s, mean_r = np.mean(list(s.values())), np.mean(list(running.values()))
    coeff = {m: np.exp(0.1 * min(np.exp(m_ / (m_ - 1) * (mean_r - running[m]))
                                 - np.exp(m_ / (m_ - 1) * (mean_s - s[m])), 7.0 if m_ == 3 else 10.0))
             for m in names}
    for m in names:
      running[m] = running[m] * (it - 1) / it + s[m] / it
    out, state = upd(grads, state, {m: jnp.asarray(v) for m, v in logits.items()},
                     jnp.asarray(y, jnp.int32), jnp.int32(it - 1))
    for m in names:
      np.testing.assert_allclose(np.asarray(out[f"{m}_encoder"]["conv"]["kernel"]),
                                 coeff[m] * np.asarray(grads[f"{m}_encoder"]["conv"]["kernel"]),
                                 rtol=2e-5, err_msg=f"{it} {m}")
    np.testing.assert_array_equal(np.asarray(out["fusion"]["fc"]["kernel"]),
                                  np.asarray(grads["fusion"]["fc"]["kernel"]))
  assert len({round(float(c), 4) for c in coeff.values()}) > 1


def np_mmpareto(g_tot, g_uni, gamma=1.5):
  """code/MMPareto.py for one encoder: lists of tensors."""
  g_mm = [a - b for a, b in zip(g_tot, g_uni)]
  cat = lambda xs: np.concatenate([x.ravel() for x in xs])
  a, b = cat(g_mm), cat(g_uni)
  cos = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8)
  if cos > 0:
    k = (0.5, 0.5)
  else:
    v11, v12, v22 = a @ a, a @ b, b @ b
    if v12 >= v11:
      c = 0.999
    elif v12 >= v22:
      c = 0.001
    else:
      c = -1.0 * ((v12 - v22) / (v11 + v22 - 2 * v12))
    k = (c, 1 - c)
  out = []
  for t, m, u in zip(g_tot, g_mm, g_uni):
    new = 2 * k[0] * m + 2 * k[1] * u
    diff = np.linalg.norm(t) / np.linalg.norm(new)
    out.append(diff * new * gamma if diff > 1 else new * gamma)
  return out


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mmpareto_matches_numpy(sign):
  g_uni = tree(1)
  g_mm = jax.tree_util.tree_map(lambda x: sign * 0.7 * x, tree(1))  # aligned or opposed
  g_mm = jax.tree_util.tree_map(lambda a, n: a + 0.3 * n, g_mm, tree(2))
  g_tot = jax.tree_util.tree_map(lambda a, b: a + b, g_mm, g_uni)
  term_grads = {"audio": g_uni, "visual": g_uni}
  tx = optim.get("mmpareto")(param_groups={"audio": "^audio_", "visual": "^visual_"})
  out = jax.jit(lambda g, mg: tx.update(g, tx.init(g), None, term_grads=mg)[0])(g_tot,
                                                                                    term_grads)
  for m in ("audio", "visual"):
    keys = [("conv", "kernel"), ("bn", "scale")]
    t = [np.asarray(g_tot[f"{m}_encoder"][a][b], np.float64) for a, b in keys]
    u = [np.asarray(g_uni[f"{m}_encoder"][a][b], np.float64) for a, b in keys]
    want = np_mmpareto(t, u)
    for (a, b), w in zip(keys, want):
      np.testing.assert_allclose(np.asarray(out[f"{m}_encoder"][a][b]), w, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out["fusion"]["fc"]["kernel"]),
                                np.asarray(g_tot["fusion"]["fc"]["kernel"]))

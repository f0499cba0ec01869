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
  tx = optim.get("agm")(param_groups=groups, alpha=0.1, clip=7.0 if len(names) == 3 else 10.0,
                        clip_kernels=None)  # the slices form alone; clipping: the fixture test
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


class _TinyAV:
  """(graphdef, params, rest) of the fixture's network (tests/fixtures/multimodal/make_fixtures.py
  `agm`): per modality Linear -> BatchNorm1d (running statistics fixed) -> ReLU, concat fusion
  `fusion/fc_out`, with the fixture's weights."""

  def __new__(cls, z):
    from flax import nnx

    class Encoder(nnx.Module):
      def __init__(self, n_in, d, rngs):
        self.fc = nnx.Linear(n_in, d, rngs=rngs)
        self.bn = nnx.BatchNorm(d, momentum=1.0, epsilon=1e-5, rngs=rngs)

      def __call__(self, x):
        return jax.nn.relu(self.bn(self.fc(x.reshape(x.shape[0], -1))))

    class Fusion(nnx.Module):
      def __init__(self, d, c, rngs):
        self.fc_out = nnx.Linear(2 * d, c, rngs=rngs)

    class Net(nnx.Module):
      def __init__(self, rngs):
        d, c = z["w/audio_net.1.weight"].shape[0], z["w/fusion_module.fc_out.weight"].shape[0]
        self.audio_encoder = Encoder(z["w/audio_net.1.weight"].shape[1], d, rngs)
        self.visual_encoder = Encoder(z["w/visual_net.1.weight"].shape[1], d, rngs)
        self.fusion = Fusion(d, c, rngs)

      def __call__(self, audio, visual):
        a, v = self.audio_encoder(audio), self.visual_encoder(visual)
        logits = self.fusion.fc_out(jnp.concatenate([a, v], -1))
        return {"logits": logits, "features": {"audio": a, "visual": v},
                "modality_logits": {"audio": logits, "visual": logits}}

    abstract = nnx.eval_shape(lambda: Net(nnx.Rngs(0)))   # no eager ops: cheap to build
    graphdef = nnx.split(abstract, nnx.Param, ...)[0]
    params, rest = {}, {}
    for ours, theirs in (("audio_encoder", "audio_net"), ("visual_encoder", "visual_net")):
      w = lambda k: jnp.asarray(z[f"w/{theirs}.{k}"])
      params[ours] = {"fc": {"kernel": w("1.weight").T, "bias": w("1.bias")},
                      "bn": {"scale": w("2.weight"), "bias": w("2.bias")}}
      rest[ours] = {"bn": {"mean": w("2.running_mean"), "var": w("2.running_var")}}
    params["fusion"] = {"fc_out": {"kernel": jnp.asarray(z["w/fusion_module.fc_out.weight"].T),
                                   "bias": jnp.asarray(z["w/fusion_module.fc_out.bias"])}}
    return graphdef, params, rest


def test_agm_official_steps_fixture():
  """Three official AGM steps (hooks on the Shapley logits, eval-mode pad passes under BatchNorm,
  clipping when a fusion-weight gradient entry leaves [-1, 1]: the first step is not clipped, the
  next two are) against the multimodal task (agm_shapley) + the agm transform."""
  import os
  from flax import nnx
  from ml_pipelines.tasks import multimodal as task_lib
  from ml_pipelines.trainer import config as config_lib
  z = np.load(os.path.join(os.path.dirname(__file__), "fixtures/multimodal/agm.npz"))
  graphdef, params, rest = _TinyAV(z)
  c = config_lib.load("configs/multimodal/agm.py:demo,concat")
  c.model.num_classes = z["w/fusion_module.fc_out.weight"].shape[0]
  task = task_lib.Multimodal(c)
  assert task.agm_shapley
  groups = {"audio": "^audio_", "visual": "^visual_"}
  tx = optim.get("agm")(param_groups=groups, alpha=0.1)
  state = tx.init(params)
  names = {"audio_encoder/fc": "audio_net.1", "audio_encoder/bn": "audio_net.2",
           "visual_encoder/fc": "visual_net.1", "visual_encoder/bn": "visual_net.2",
           "fusion/fc_out": "fusion_module.fc_out"}

  @jax.jit
  def step_fn(params, rest, state, batch, step):
    def f(p):  # as the trainer: one forward, a backward pass per named term
      model = nnx.merge(graphdef, p, rest)
      loss, aux = task.loss(model, batch, jax.random.key(0), None, step)
      return (loss, aux["grad_terms"]), aux
    (loss, terms), vjp_fn, aux = jax.vjp(f, params, has_aux=True)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, terms)
    grads = vjp_fn((jnp.ones_like(loss), zeros))[0]
    term_grads = {m: vjp_fn((jnp.zeros_like(loss), {**zeros, m: jnp.ones_like(t)}))[0]
                  for m, t in terms.items()}
    updates, state = tx.update(grads, state, params, step=step, term_grads=term_grads,
                               **aux["tx_args"])
    return updates, state, jax.tree_util.tree_map(lambda p, u: p - 2.0 * u, params, updates)

  for i in range(3):
    batch = {"audio": jnp.asarray(z[f"batch{i}/0"])[..., None],
             "visual": jnp.asarray(z[f"batch{i}/1"]), "label": jnp.asarray(z[f"batch{i}/2"])}
    updates, state, params = step_fn(params, rest, state, batch, jnp.int32(i))
    flat = {optim.paths.path_str(p): np.asarray(u)
            for p, u in jax.tree_util.tree_flatten_with_path(updates)[0]}
    for ours, theirs in names.items():
      for a, b in (("kernel", "weight"), ("bias", "bias"), ("scale", "weight")):
        if f"{ours}/{a}" in flat and f"grad{i}/{theirs}.{b}" in z:
          want = z[f"grad{i}/{theirs}.{b}"]
          np.testing.assert_allclose(flat[f"{ours}/{a}"], want.T if a == "kernel" else want,
                                     rtol=2e-4, atol=2e-6, err_msg=f"step {i} {ours}/{a}")

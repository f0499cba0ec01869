"""MIE / IGM: SVD projector, stage schedule, moment accumulation and projection, flat-loss mix,
against NumPy written from the official code (njustkmg/IJCAI25-IGM models/AudioVideo.py)."""
import jax
import jax.numpy as jnp
import numpy as np

import optim
from optim import mie

GROUPS = {"audio": "^audio_", "visual": "^visual_"}
HEAD = ["fc1/kernel", "fc2/kernel"]


def np_projector(m, tau):
  _, s, vt = np.linalg.svd(m)  # torch.svd's V = vt.T
  lam = np.exp(tau * (-(s - s.min()) / (s.max() - s.min())))
  return vt.T @ np.diag(lam) @ vt


def test_projector_matches_numpy_and_degenerate_is_identity():
  r = np.random.default_rng(0)
  xs = r.normal(size=(5, 6))
  m = sum(np.outer(x, x) for x in xs)
  np.testing.assert_allclose(np.asarray(mie.projector(jnp.asarray(m, jnp.float32), 0.4)),
                             np_projector(m, 0.4), atol=2e-5)
  np.testing.assert_allclose(np.asarray(mie.projector(jnp.zeros((4, 4)), 0.4)), np.eye(4), atol=1e-6)


def test_stage_schedule():
  steps = "3,2,2"
  for step, (want_idx, want_end) in {0: (0, 3), 2: (0, 3), 3: (1, 5), 4: (1, 5), 5: (2, 7),
                                     6: (2, 7), 9: (2, 7)}.items():
    idx, end = mie.stage(step, steps)
    assert (int(idx), int(end)) == (want_idx, want_end), step
    assert int(mie.modality_index(step, steps, 2)) == want_idx % 2


def tree(seed):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return {"audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 4)}},
          "audio_head": {"fc1": {"kernel": f(4, 3)}, "fc2": {"kernel": f(3, 2)}},
          "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 4)}},
          "visual_head": {"fc1": {"kernel": f(4, 3)}, "fc2": {"kernel": f(3, 2)}}}


def test_schedule_moments_and_projection():
  params, grads = tree(0), tree(1)
  tx = optim.get("mie")(param_groups=GROUPS, stage_steps="3,2,2", flat_ratio=0.0, tau=0.4,
                        collect_steps=2)
  r = np.random.default_rng(2)
  inputs = [{f"{m}_head/fc1/kernel": r.normal(size=4).astype(np.float32) for m in GROUPS} |
            {f"{m}_head/fc2/kernel": r.normal(size=3).astype(np.float32) for m in GROUPS}
            for _ in range(7)]
  upd = jax.jit(lambda g, s, p, st, x: tx.update(g, s, p, grad_fn=None, step=st, mie_inputs=x))
  state = tx.init(params)
  # NumPy reference of the schedule: stage (modality, start, end) = (audio 0-3), (visual 3-5), (audio 5-7)
  stages = [("audio", 0, 3), ("visual", 3, 5), ("audio", 5, 7)]
  moments = {k: np.zeros((len(v), len(v))) for k, v in inputs[0].items()}
  proj = {k: np.eye(len(v)) for k, v in inputs[0].items()}
  for step in range(7):
    cur, start, end = next(s for s in stages if s[1] <= step < s[2])
    prev = "visual" if cur == "audio" else "audio"
    if step == start and start > 0:
      for h in HEAD:
        proj[f"{cur}_head/{h}"] = np_projector(moments[f"{prev}_head/{h}"], 0.4)
        moments[f"{cur}_head/{h}"] = np.zeros_like(moments[f"{cur}_head/{h}"])
    out, state = upd(grads, state, params, jnp.int32(step), inputs[step])
    for m in GROUPS:
      for h in HEAD:
        k = f"{m}_head/{h}"
        g = np.asarray(grads[f"{m}_head"][h.split("/")[0]]["kernel"])
        want = proj[k] @ g if m == cur else g
        got = np.asarray(out[f"{m}_head"][h.split("/")[0]]["kernel"])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{step} {k}")
      np.testing.assert_array_equal(np.asarray(out[f"{m}_encoder"]["conv1"]["kernel"]),
                                    np.asarray(grads[f"{m}_encoder"]["conv1"]["kernel"]))
    if step >= end - 2:
      for h in HEAD:
        x = inputs[step][f"{cur}_head/{h}"].astype(np.float64)
        moments[f"{cur}_head/{h}"] += np.outer(x, x)
  assert not np.allclose(proj["audio_head/fc1/kernel"], np.eye(4))  # a projection was exercised


def test_flat_loss_mix_perturbs_current_modality_per_tensor():
  params, grads = tree(3), tree(4)
  tx = optim.get("mie")(param_groups=GROUPS, stage_steps="5,5", rho=0.1, flat_ratio=0.3)
  zeros = {f"{m}_head/fc1/kernel": jnp.zeros(4) for m in GROUPS} | {
      f"{m}_head/fc2/kernel": jnp.zeros(3) for m in GROUPS}
  grad_fn = lambda w: jax.tree_util.tree_map(lambda x: 2.0 * x, w)  # L = ||w||^2
  out, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, grad_fn=grad_fn, step=jnp.int32(6),
                                           mie_inputs=zeros))(grads, params)
  # (stage 1 trains visual; P = projector(0) = I)
  for p, u in jax.tree_util.tree_flatten_with_path(out)[0]:
    k = optim.paths.path_str(p)
    get = lambda t: np.asarray([x for q, x in jax.tree_util.tree_flatten_with_path(t)[0]
                                if optim.paths.path_str(q) == k][0], np.float64)
    g, w = get(grads), get(params)
    eps = 0.1 * g / np.linalg.norm(g) if k.startswith("visual") else 0.0
    np.testing.assert_allclose(np.asarray(u), 0.7 * g + 0.3 * 2.0 * (w + eps), rtol=1e-5,
                               atol=1e-6, err_msg=k)

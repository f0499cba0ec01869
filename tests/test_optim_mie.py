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


def test_official_step_matches_fixture():
  """One official `train_withP` step (tests/fixtures/multimodal/make_fixtures.py): moments over three
  audio batches (compute_P_matrix), then a video step with the 0.7 mixup CE + 0.3 unmixed-label CE
  loss and the gradient modification (both shape-matching audio head layers act on each of the
  first two video head layers)."""
  import os
  from losses import multimodal as mml
  z = np.load(os.path.join(os.path.dirname(__file__), "fixtures/multimodal/mie.npz"))
  torch_names = {"audio": ("audio_encoder.1", "cls_a.0", "cls_a.2", "cls_a.3"),
                 "visual": ("video_encoder.1", "cls_v.0", "cls_v.2", "cls_v.3")}

  def layer(name):
    return {"kernel": jnp.asarray(z[f"w/{name}.weight"].T),
            "bias": jnp.asarray(z[f"w/{name}.bias"])}
  params = {f"{m}_encoder": {"fc": layer(n[0])} for m, n in torch_names.items()}
  params |= {f"{m}_head": {"layers": {str(i): layer(n[i + 1]) for i in range(3)}}
             for m, n in torch_names.items()}

  def forward(p, m, x):
    """Logits and the batch-mean input of every Dense kernel of modality m."""
    x = x.reshape(x.shape[0], -1)
    means = {f"{m}_encoder/fc/kernel": x.mean(0)}
    h = x @ p[f"{m}_encoder"]["fc"]["kernel"] + p[f"{m}_encoder"]["fc"]["bias"]
    for i in range(3):
      means[f"{m}_head/layers/{i}/kernel"] = h.mean(0)
      lay = p[f"{m}_head"]["layers"][str(i)]
      h = h @ lay["kernel"] + lay["bias"]
      h = jax.nn.relu(h) if i == 0 else h
    return h, means

  groups = {"audio": "^audio_", "visual": "^visual_"}
  tx = optim.get("mie")(param_groups=groups, stage_steps="3,1", tau=0.4)
  upd = jax.jit(lambda g, s, st, x: tx.update(g, s, params, grad_fn=None, step=st, mie_inputs=x))
  state = tx.init(params)
  assert set(mie.input_shapes(params, groups)) == set(mie.zero_inputs(params, groups))
  assert mie.source_kernels(params, groups)["visual_head/layers/0/kernel"] == [
      "audio_head/layers/0/kernel", "audio_head/layers/1/kernel"]
  zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
  for step in range(3):   # the audio stage: its kernels' input moments accumulate
    _, means = forward(params, "audio", jnp.asarray(z[f"loader{step}/0"]))
    inputs = mie.zero_inputs(params, groups) | means
    _, state = upd(zero_grads, state, step, inputs)
  ours = {"audio_encoder/1": "audio_encoder/fc/kernel", "cls_a/0": "audio_head/layers/0/kernel",
          "cls_a/2": "audio_head/layers/1/kernel", "cls_a/3": "audio_head/layers/2/kernel"}
  for theirs, q in ours.items():
    np.testing.assert_allclose(np.asarray(state.moments[q]), z[f"moment/{theirs}"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(mie.projector(state.moments[q], 0.4)), z[f"P/{theirs}"],
                               atol=2e-5)
  # with_moments reaches the same state without the three steps
  direct = mie.with_moments(tx.init(params), {q: z[f"moment/{t}"] for t, q in ours.items()})
  for q in ours.values():
    np.testing.assert_allclose(np.asarray(direct.moments[q]), np.asarray(state.moments[q]),
                               rtol=1e-5, atol=1e-6)

  y = jnp.asarray(np.argmax(z["train/2"], 1))
  perm, lam = jnp.asarray(z["perm"]), float(z["lam"])
  x = jnp.asarray(z["train/1"])
  mixed = lam * x + (1 - lam) * x[perm]

  def loss(p):
    return mml.mie_loss(forward(p, "visual", mixed)[0], y, perm, lam, 0.3)
  grads = jax.grad(loss)(params)
  out, _ = upd(grads, state, 3, mie.zero_inputs(params, groups))
  for i, name in enumerate(torch_names["visual"]):
    lay = out["visual_encoder"]["fc"] if i == 0 else out["visual_head"]["layers"][str(i - 1)]
    np.testing.assert_allclose(np.asarray(lay["kernel"]).T, z[f"grad/{name}.weight"], rtol=1e-4,
                               atol=1e-6, err_msg=name)
    np.testing.assert_allclose(np.asarray(lay["bias"]), z[f"grad/{name}.bias"], rtol=1e-4,
                               atol=1e-6, err_msg=name)

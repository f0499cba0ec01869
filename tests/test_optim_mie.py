"""MIE / IGM: SVD projector, moment accumulation, stage projectors and projection, flat-loss mix,
against NumPy written from the official code (njustkmg/IJCAI25-IGM models/AudioVideo.py) and a
fixture of one official step. (The stage schedule is `config.stages`: tests/test_stages.py.)"""
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


def tree(seed):
  r = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return {"audio_encoder": {"conv1": {"kernel": f(3, 3, 1, 4)}},
          "audio_head": {"fc1": {"kernel": f(4, 3)}, "fc2": {"kernel": f(3, 2)}},
          "visual_encoder": {"conv1": {"kernel": f(3, 3, 3, 4)}},
          "visual_head": {"fc1": {"kernel": f(4, 3)}, "fc2": {"kernel": f(3, 2)}}}


def test_moments_stage_projectors_and_projection():
  params, grads = tree(0), tree(1)
  r = np.random.default_rng(2)
  inputs = [{f"{m}_head/fc1/kernel": r.normal(size=4).astype(np.float32) for m in GROUPS} |
            {f"{m}_head/fc2/kernel": r.normal(size=3).astype(np.float32) for m in GROUPS}
            for _ in range(3)]
  # The audio stage's last two steps collect audio's input moments (NumPy: sum of outer products).
  moments = mie.zero_moments(params, GROUPS)
  audio = mie.kernels_of(params, GROUPS, "audio")
  assert audio == ["audio_head/fc1/kernel", "audio_head/fc2/kernel"]
  for step, x in enumerate(inputs):
    moments = mie.accumulate(moments, {k: jnp.asarray(v) for k, v in x.items()}, audio, step >= 1)
  want = {k: sum(np.outer(x[k], x[k]) for x in inputs[1:]) for k in audio}
  for k in audio:
    np.testing.assert_allclose(np.asarray(moments[k]), want[k], rtol=1e-5)
  assert all(float(jnp.abs(moments[k]).sum()) == 0 for k in moments if k.startswith("visual"))
  # The visual stage: each visual kernel goes through the projector of audio's same-shape kernel.
  proj = mie.stage_projectors(moments, params, GROUPS, "visual", 0.4)
  assert set(proj) == {"visual_head/fc1/kernel", "visual_head/fc2/kernel"}
  for h in HEAD:
    np.testing.assert_allclose(np.asarray(proj[f"visual_head/{h}"]),
                               np_projector(want[f"audio_head/{h}"], 0.4), atol=2e-5)
  tx = optim.get("mie")(param_groups=GROUPS)
  out, _ = jax.jit(lambda g: tx.update(g, tx.init(params), params, grad_fn=None,
                                       mie_modality=jnp.int32(1), mie_projectors=proj))(grads)
  for m in GROUPS:
    for h in HEAD:
      g = np.asarray(grads[f"{m}_head"][h.split("/")[0]]["kernel"])
      want_g = np.asarray(proj[f"visual_head/{h}"]) @ g if m == "visual" else g
      np.testing.assert_allclose(np.asarray(out[f"{m}_head"][h.split("/")[0]]["kernel"]), want_g,
                                 rtol=1e-4, atol=1e-5, err_msg=f"{m} {h}")
    np.testing.assert_array_equal(np.asarray(out[f"{m}_encoder"]["conv1"]["kernel"]),
                                  np.asarray(grads[f"{m}_encoder"]["conv1"]["kernel"]))
  assert not np.allclose(np.asarray(proj["visual_head/fc1/kernel"]), np.eye(4))


def test_flat_loss_mix_perturbs_current_modality_per_tensor():
  params, grads = tree(3), tree(4)
  tx = optim.get("mie")(param_groups=GROUPS, rho=0.1, flat_ratio=0.3)
  grad_fn = lambda w: jax.tree_util.tree_map(lambda x: 2.0 * x, w)  # L = ||w||^2
  out, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, grad_fn=grad_fn,
                                           mie_modality=jnp.int32(1), mie_projectors={}))(
                                               grads, params)
  # (visual trains; no projectors)
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
  tx = optim.get("mie")(param_groups=groups)
  assert mie.source_kernels(params, groups)["visual_head/layers/0/kernel"] == [
      "audio_head/layers/0/kernel", "audio_head/layers/1/kernel"]
  moments = mie.zero_moments(params, groups)
  audio = mie.kernels_of(params, groups, "audio")
  for step in range(3):   # the audio stage: its kernels' input moments accumulate
    _, means = forward(params, "audio", jnp.asarray(z[f"loader{step}/0"]))
    moments = mie.accumulate(moments, means, audio, True)
  ours = {"audio_encoder/1": "audio_encoder/fc/kernel", "cls_a/0": "audio_head/layers/0/kernel",
          "cls_a/2": "audio_head/layers/1/kernel", "cls_a/3": "audio_head/layers/2/kernel"}
  for theirs, q in ours.items():
    np.testing.assert_allclose(np.asarray(moments[q]), z[f"moment/{theirs}"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(mie.projector(moments[q], 0.4)), z[f"P/{theirs}"],
                               atol=2e-5)
  proj = mie.stage_projectors(moments, params, groups, "visual", 0.4)

  y = jnp.asarray(np.argmax(z["train/2"], 1))
  perm, lam = jnp.asarray(z["perm"]), float(z["lam"])
  x = jnp.asarray(z["train/1"])
  mixed = lam * x + (1 - lam) * x[perm]

  def loss(p):
    return mml.mie_loss(forward(p, "visual", mixed)[0], y, perm, lam, 0.3)
  grads = jax.grad(loss)(params)
  out, _ = jax.jit(lambda g: tx.update(g, tx.init(params), params, grad_fn=None,
                                       mie_modality=jnp.int32(1), mie_projectors=proj))(grads)
  for i, name in enumerate(torch_names["visual"]):
    lay = out["visual_encoder"]["fc"] if i == 0 else out["visual_head"]["layers"][str(i - 1)]
    np.testing.assert_allclose(np.asarray(lay["kernel"]).T, z[f"grad/{name}.weight"], rtol=1e-4,
                               atol=1e-6, err_msg=name)
    np.testing.assert_allclose(np.asarray(lay["bias"]), z[f"grad/{name}.bias"], rtol=1e-4,
                               atol=1e-6, err_msg=name)

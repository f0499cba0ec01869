"""SGIEL against the official code (fixtures): its loss functions on fixed tensors, and a tiny
`embed_net` (ResNet-50 cut to one block per stage, seeded weights loaded through our `sgiel`
converter) in train mode: features, projections, logits, every loss term, the gradient-norm
weights, the orthogonality loss and the updated BatchNorm statistics of each modality."""
from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from losses import reid as reid_losses
from models import convert
from ml_pipelines.tasks import reid as reid_task

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, os.path.join(FIXTURES, "hashing"))
from seeded_weights import seeded_input, seeded_state_dict  # noqa: E402

PROBE = np.random.default_rng(7).standard_normal((2048, 16)).astype(np.float32)


def test_losses_match_official():
  f = np.load(os.path.join(FIXTURES, "sgiel", "losses.npz"))
  np.testing.assert_allclose(reid_losses.soft_cross_entropy(f["logit"][:6], f["logit"][6:]),
                             f["sce"], rtol=1e-6)
  cpmt, grad = jax.value_and_grad(lambda l2: reid_losses.shape_complementary(
      l2, jnp.asarray(f["zp_shape"]), jnp.asarray(f["labels"])))(jnp.asarray(f["logit2"]))
  np.testing.assert_allclose(cpmt, f["cpmt"], rtol=1e-6)
  np.testing.assert_allclose(grad, f["cpmt_grad"], atol=1e-7)


def _tiny(seed):
  with open(os.path.join(FIXTURES, "sgiel", "embed_net_shapes.json")) as fh:
    shapes = json.load(fh)
  model = models.build(dict(name="sgiel", num_classes=5, depths=(1, 1, 1, 1)))
  convert.load_into(model, seeded_state_dict(shapes, seed), converter=convert.get("sgiel"))
  return model


def test_embed_net_train_forward_and_losses_match_official():
  f = np.load(os.path.join(FIXTURES, "sgiel", "embed_net.npz"))
  student, teacher = _tiny(0), _tiny(1)
  x = [jnp.asarray(seeded_input((4, 3, 64, 32), 10 + i).transpose(0, 2, 3, 1)) for i in range(4)]
  batch = dict(image_vis=x[0], image_ir=x[1], shape_vis=x[2], shape_ir=x[3],
               label=jnp.array([0, 0, 1, 1]))
  t_out = teacher(*x)
  gd, state = nnx.split(student)

  @jax.jit
  def run(state):
    out = nnx.merge(gd, jax.tree.map(lambda a: a, state))(*x)
    m = nnx.merge(gd, jax.tree.map(lambda a: a, state))  # one forward's statistics, as the code
    total, terms = reid_task.sgiel_losses(m, t_out["shape"], batch)
    return out, total, terms, nnx.state(m)
  out, total, terms, new_state = run(state)
  for stream in ("rgbir", "shape"):
    for k, v in out[stream].items():
      v = np.asarray(v)
      v = v @ PROBE if v.shape[-1] == 2048 else v
      want = f[f"{stream}_{k}"]  # float32 sums over 2048 channels: a tolerance scaled to size
      np.testing.assert_allclose(v, want, rtol=0, atol=3e-5 * np.abs(want).max(),
                                 err_msg=f"{stream} {k}")
  names = {"id": "loss_id", "id2": "loss_id2", "shape": "loss_shape", "tri": "loss_tri",
           "kl": "loss_kl", "cpmt": "loss_cpmt", "est": "loss_est", "w1": "w1", "w2": "w2",
           "orth": "orth"}
  for ours, theirs in names.items():
    np.testing.assert_allclose(terms[ours], f[theirs], rtol=1e-4, atol=1e-5, err_msg=ours)
  np.testing.assert_allclose(total, f["total"], rtol=1e-4)
  # Running statistics after the one forward. PyTorch updates running_var with the unbiased
  # batch variance (x n / (n - 1), n values per channel), Flax with the biased one: undo the factor.
  trained = nnx.merge(gd, new_state)
  sd = convert.to_state_dict(trained, convert.get("sgiel"))
  with open(os.path.join(FIXTURES, "sgiel", "embed_net_shapes.json")) as fh:
    initial = seeded_state_dict(json.load(fh), 0)
  count = {"base_resnet.base.layer1.0.bn1_shape.running_var": 8 * 16 * 8,
           "base_resnet.base.layer4.0.dsbn_ir.running_var": 4 * 4 * 2,
           "thermal_module.thermal.bn1.running_var": 4 * 32 * 16,
           "bottleneck_shape.running_var": 8}
  for key in [k[5:] for k in f.files if k.startswith("stat:")]:
    want = f["stat:" + key]
    if key in count:
      n = count[key]
      want = 0.9 * initial[key] + (want - 0.9 * initial[key]) * (n - 1) / n
    np.testing.assert_allclose(sd[key], want, rtol=1e-4, atol=1e-5, err_msg=key)

"""ReSTE and the other sign estimators, binary layers, indicators, and a BNN through the trainer."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import binary

T = 1.5
# A grid through every breakpoint (0, +-0.1, +-1, +-t) and points between and beyond them.
GRID = np.array([-2.0, -1.6, -1.5, -1.2, -1.0, -0.7, -0.1, -0.05, 0.0, 0.03, 0.1, 0.1001, 0.5,
                 1.0, 1.4999, 1.5, 1.5001, 3.0], np.float32)


def reste_grad_np(x, o, t=T):
  """The paper's g(x), written from eq. 7 and the official backward (breakpoints compared in the
  input's dtype, as torch compares a float32 tensor with the Python scalar 0.1)."""
  out = np.zeros_like(x, np.float64)
  for i, v in enumerate(np.abs(x)):
    if v <= x.dtype.type(0.1):
      out[i] = 0.1 ** (1 / o) / 0.1
    elif v <= x.dtype.type(t):
      v = float(v)
      out[i] = (1 / o) * v ** ((1 - o) / o)
  return out


def _grad(estimator, x, param):
  return np.asarray(jax.grad(lambda v: jnp.sum(binarize(estimator, v, param)))(jnp.asarray(x)))


def binarize(estimator, x, param):
  return binary.binarize(estimator, x, jnp.float32(param), T)


@pytest.mark.parametrize("o", [1.0, 1.7, 3.0])
def test_reste_backward_matches_analytic(o):
  np.testing.assert_allclose(_grad("reste", GRID, o), reste_grad_np(GRID, o), rtol=1e-5)


def test_reste_backward_is_derivative_of_power_function():
  """Independent check: central differences of sign(x)|x|^(1/o) inside 0.1 < |x| < t."""
  o, h = 2.5, 1e-4
  x = np.array([-1.3, -0.8, -0.25, 0.2, 0.6, 1.2])
  f = lambda v: np.sign(v) * np.abs(v) ** (1 / o)
  fd = (f(x + h) - f(x - h)) / (2 * h)
  np.testing.assert_allclose(_grad("reste", x.astype(np.float32), o), fd, rtol=1e-4)
  # the linear segment joins the power function continuously at |x| = 0.1 (secant slope)
  assert reste_grad_np(np.array([0.1], np.float32), o)[0] == pytest.approx(f(0.1) / 0.1)


def test_o_equal_one_is_clipped_ste_at_t():
  np.testing.assert_array_equal(_grad("reste", GRID, 1.0), (np.abs(GRID) <= T).astype(np.float32))


def test_forward_is_sign_with_sign0_plus_one():
  for est in binary.ESTIMATORS:
    y = np.asarray(binarize(est, jnp.asarray(GRID), 2.0))
    np.testing.assert_array_equal(y, np.where(GRID >= 0, 1.0, -1.0))


def test_other_estimators_backward():
  x = GRID
  np.testing.assert_array_equal(_grad("ste", x, 1.0), np.ones_like(x))
  np.testing.assert_array_equal(_grad("clipped_ste", x, 1.0), (np.abs(x) <= 1).astype(np.float32))
  np.testing.assert_allclose(_grad("approx_sign", x, 1.0),
                             np.where(np.abs(x) < 1, 2 - 2 * np.abs(x), 0.0), atol=1e-6)
  for p in (0.0, 0.5, 1.0):
    t = 0.1 * 10 ** (p * 2)  # IR-Net: T_min 0.1, T_max 10
    k = max(1 / t, 1.0)
    want = k * t * (1 - np.tanh(t * x.astype(np.float64)) ** 2)
    np.testing.assert_allclose(_grad("ede", x, binary.estimator_param("ede", p)), want, rtol=1e-5,
                               atol=1e-9)


def test_schedule():
  np.testing.assert_allclose(binary.reste_o(0.0, 3.0), 1.0)
  np.testing.assert_allclose(binary.reste_o(1.0, 3.0), 3.0, rtol=1e-6)
  np.testing.assert_allclose(binary.reste_o(0.5, 3.0), 1 + 2 * (1 - math.cos(math.pi / 4)),
                             rtol=1e-6)


def test_binary_conv_forward_and_weight_grad():
  rng = np.random.default_rng(0)
  conv = binary.BinaryConv(2, 3, 3, 1, estimator="reste", o_end=3.0, t=T, rngs=nnx.Rngs(0))
  x = rng.standard_normal((1, 4, 5, 2)).astype(np.float32)
  w = np.asarray(conv.kernel[...], np.float64)
  y = np.asarray(conv(jnp.asarray(x), 1.0))
  xb, wb = np.where(x >= 0, 1.0, -1.0), np.abs(w).mean() * np.where(w >= 0, 1.0, -1.0)
  xp = np.pad(xb, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((1, 4, 5, 3))
  for i in range(4):
    for j in range(5):
      want[0, i, j] = np.einsum("hwc,hwco->o", xp[0, i:i + 3, j:j + 3], wb)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  # d/dW sum(conv): through the scale mean|W| (sign(W)/n * sum(xcorr with sign W)) and ReSTE's g(W).
  o = float(binary.reste_o(0.5, 3.0))
  grads = nnx.grad(lambda m: jnp.sum(m(jnp.asarray(x), o)))(conv)["kernel"][...]
  s = np.zeros_like(w)  # dL/d(w_b) = correlation of the padded binary input with ones
  for i in range(4):
    for j in range(5):
      s += xp[0, i:i + 3, j:j + 3][..., None] * np.ones((1, 1, 1, 3))
  sw = np.where(w >= 0, 1.0, -1.0)
  want_g = np.abs(w).mean() * s * reste_grad_np(w.ravel().astype(np.float32), o).reshape(w.shape) \
      + np.sum(s * sw) * sw / w.size
  np.testing.assert_allclose(np.asarray(grads), want_g, rtol=1e-4, atol=1e-5)


def test_binary_dense_forward():
  rng = np.random.default_rng(3)
  dense = binary.BinaryDense(5, 4, estimator="approx_sign", o_end=3.0, t=T, rngs=nnx.Rngs(1))
  x = rng.standard_normal((3, 5)).astype(np.float32)
  w = np.asarray(dense.kernel[...], np.float64)
  want = np.where(x >= 0, 1.0, -1.0) @ (np.abs(w).mean() * np.where(w >= 0, 1.0, -1.0))
  np.testing.assert_allclose(np.asarray(dense(jnp.asarray(x), 0.3)), want, rtol=1e-5, atol=1e-6)


def test_estimating_error_and_stability():
  m = binary.BiRealResNet(stages=(2, 3), blocks=(1, 1), in_channels=1, rngs=nnx.Rngs(0))
  layers = binary.binary_layers(m)
  assert len(layers) == 4
  o_end = 3.0
  want = sum(np.linalg.norm((np.sign(w) * np.abs(w) ** (1 / o_end) - np.sign(w)).ravel())
             for w in (np.asarray(l.kernel[...], np.float64) for l in layers.values()))
  np.testing.assert_allclose(binary.estimating_error(m), want, rtol=1e-5)  # default: o_end
  np.testing.assert_allclose(binary.estimating_error(m, 3.0), want, rtol=1e-5)
  gs = [np.arange(6.0).reshape(2, 3) - 2.5, np.array([1.0, -3.0])]
  np.testing.assert_allclose(binary.gradient_stability([jnp.asarray(g) for g in gs]),
                             np.var(np.abs(gs[0]), ddof=1) + np.var(np.abs(gs[1]), ddof=1))


def test_models_register_and_layer_counts():
  """Registered names; binary layers per model (first conv, shortcuts and classifier stay FP)."""
  counts = {"bnn_resnet20": 18, "bnn_resnet18": 16, "bnn_vgg_small": 5}
  for name, n in counts.items():
    assert models.factory(name).__module__ == "models.binary"
    abstract = nnx.eval_shape(lambda: models.build(name, width=2, in_channels=1, **(
        {"image_size": 8} if name == "bnn_vgg_small" else {})))
    assert len(binary.binary_layers(abstract)) == n
    assert sum(isinstance(m, nnx.Conv) for _, m in nnx.iter_graph(abstract)) == {
        "bnn_resnet20": 3, "bnn_resnet18": 4, "bnn_vgg_small": 1}[name]  # stem + 1x1 downsamples


@pytest.mark.slow
def test_bnn_trains_through_trainer(tmp_path):
  """A few SGD steps of a narrow VGG-small on digits: o is scheduled and logged, indicators reported."""
  from ml_pipelines.trainer import config as config_lib
  from ml_pipelines import train
  cfg = config_lib.load("configs/bnn/bnn_vgg_small.py:digits")
  cfg.model.width = 4
  cfg.total_steps, cfg.log_every, cfg.eval_every, cfg.checkpoint_every = 4, 2, 4, 0
  cfg.batch_size, cfg.eval_batch_size, cfg.task.indicator_examples = 16, 360, 32
  result = train.train_and_evaluate(cfg, str(tmp_path))
  for k in ("eval/accuracy", "eval/estimating_error", "eval/gradient_stability"):
    assert np.isfinite(result[k]), k
  assert result["eval/gradient_stability"] > 0
  # at the end of training o = o_end: the indicator equals the o_end formula on the final weights
  params = result["state"]["params"]
  want = 0.0
  for i in range(5):
    w = np.asarray(params["convs"][i]["kernel"], np.float64)
    want += np.linalg.norm((np.sign(w) * np.abs(w) ** (1 / 3.0) - np.sign(w)).ravel())
  np.testing.assert_allclose(result["eval/estimating_error"], want, rtol=1e-4)
  lines = [json.loads(l) for l in open(os.path.join(tmp_path, "metrics.jsonl"))]
  o_logged = [l["train/o"] for l in lines if "train/o" in l]
  # mean of o over steps 0,1 and 2,3 of a 4-step cosine schedule
  want_o = [np.mean([float(binary.reste_o(s / 4, 3.0)) for s in r]) for r in ((0, 1), (2, 3))]
  np.testing.assert_allclose(o_logged, want_o, rtol=1e-5)


def test_official_fixture():
  """DravenALG/ReSTE run on small random inputs (tests/fixtures/bnn/make_fixtures.py): a
  BinarizeConv2d at o = 2.2 (forward, input and weight gradients), the two indicators
  (get_stability_var with torch.var's n - 1, get_fitting_error at o_end) and the per-epoch schedule."""
  from ml_pipelines.tasks import bnn
  z = np.load(os.path.join(os.path.dirname(__file__), "fixtures/bnn/reste.npz"))
  nhwc = lambda a: np.transpose(a, (0, 2, 3, 1))
  hwio = lambda w: np.transpose(w, (2, 3, 1, 0))
  o = float(z["conv/o"])

  def conv_of(weight):
    w = hwio(weight)
    abstract = nnx.eval_shape(lambda: binary.BinaryConv(w.shape[2], w.shape[3], w.shape[0], 1,
                                                        estimator="reste", o_end=3.0, t=T,
                                                        rngs=nnx.Rngs(0)))
    return nnx.merge(nnx.graphdef(abstract), {"kernel": jnp.asarray(w)})
  conv = conv_of(z["conv/weight"])
  x, r = jnp.asarray(nhwc(z["conv/input"])), jnp.asarray(nhwc(z["conv/r"]))
  np.testing.assert_allclose(np.asarray(conv(x, o)), nhwc(z["conv/output"]), rtol=1e-5, atol=1e-5)
  gx, gm = nnx.jit(nnx.grad(lambda x_, m: jnp.sum(m(x_, o) * r), argnums=(0, 1)))(x, conv)
  np.testing.assert_allclose(np.asarray(gx), nhwc(z["conv/grad_input"]), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(gm.kernel[...]), hwio(z["conv/grad_weight"]), rtol=1e-4,
                             atol=1e-5)

  names = ("layer1.conv1.weight", "layer1.conv2.weight")
  np.testing.assert_allclose(
      float(binary.gradient_stability([jnp.asarray(hwio(z[f"tiny_grad/{n}"])) for n in names])),
      float(z["stability_var"]), rtol=1e-5)

  class Two(nnx.Module):
    def __init__(self):
      self.a, self.b = (conv_of(z[f"tiny/{n}"]) for n in names)
  np.testing.assert_allclose(float(binary.estimating_error(Two())), float(z["fitting_error"]),
                             rtol=1e-5)

  spe, epochs = 3, len(z["schedule_o"])
  got = binary.estimator_param("reste", bnn.progress(jnp.arange(spe * epochs), spe * epochs, spe),
                               3.0)
  np.testing.assert_allclose(np.asarray(got), np.repeat(z["schedule_o"], spe), rtol=1e-6)

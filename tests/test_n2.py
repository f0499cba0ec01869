"""N² against the official sunjss/N2 forward and gradients (fixtures from
tests/fixtures/n2/make_n2_fixtures.py), the row clip, padding, T-independence of the parameters."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from ml_pipelines.data import graphs
from models import convert, n2

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "n2", "n2_reference.npz"))
DIMS = dict(in_features=5, num_classes=3, d_model=8, q_dim=6, n_q=2, n_pnode=4, T=2, dropout=0.0)


def _params(case):
  base = case.removesuffix("_clip")
  sd = {k.split("/param/")[1]: REF[k] for k in REF.files if k.startswith(f"{base}/param/")}
  sd.update({k.split("/param/")[1]: REF[k] for k in REF.files if k.startswith(f"{case}/param/")})
  return sd


def _model(case):
  """The official weights; the clip cases in float64 (call under `enable_x64`)."""
  name, n_c = ("n2_graph", 2) if case.startswith("graph") else ("n2_node", 1)
  model = models.build(name, n_c=n_c, **DIMS)
  convert.load_into(model, _params(case), converter=n2.OfficialN2())
  if case.endswith("clip"):
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), state))
  model.eval()
  return model


def _input(case):
  scale = np.float32(1e3 if case.endswith("clip") else 1.0)
  if case.startswith("node"):
    ei = REF["node/edge_index"]  # official rows: (target, source)
    return {"x": _float(case, REF["node/x"] * scale), "senders": ei[1], "receivers": ei[0]}
  padded = [graphs.pad_graph(REF[f"graph/x{i}"] * scale, REF[f"graph/edge_index{i}"][1],
                             REF[f"graph/edge_index{i}"][0], max_nodes=8, max_edges=10)
            for i in range(3)]
  batch = {k: np.stack([p[k] for p in padded]) for k in padded[0]}
  batch["x"] = _float(case, batch["x"])
  return batch


def _float(case, x):
  return np.asarray(x, np.float64 if case.endswith("clip") else np.float32)


def _loss(model, batch, labels):
  logp = jax.nn.log_softmax(model(batch))
  return -jnp.sum(jnp.take_along_axis(logp, labels[:, None], 1)), logp


@pytest.mark.parametrize("case", ["node", "node_clip", "graph", "graph_clip"])
def test_forward_and_gradients_match_the_official_code(case):
  with jax.enable_x64(case.endswith("clip")):
    _check_against_official(case)


def _check_against_official(case):
  model, batch = _model(case), _input(case)
  labels = jnp.asarray(REF[f"{case}/labels"])
  (_, logp), grads = nnx.jit(nnx.value_and_grad(_loss, has_aux=True))(model, batch, labels)
  np.testing.assert_allclose(logp, REF[f"{case}/logp"], rtol=2e-4, atol=2e-4)
  ours = convert.to_state_dict(grads, n2.OfficialN2())
  theirs = {k.split("/grad/")[1]: REF[k] for k in REF.files if k.startswith(f"{case}/grad/")}
  assert set(theirs) - {k for k in theirs if "time_embedding" in k or "edge_wise" in k} <= set(
      k.replace(".linear.", ".0.") for k in ours)
  for key, want in theirs.items():
    got = ours[key.replace(".0.", ".linear.")]
    scale = max(np.abs(want).max(), 1e-2)  # some biases have ~0 gradient (a LayerNorm follows)
    np.testing.assert_allclose(np.reshape(got, want.shape) / scale, want / scale, atol=2e-4,
                               err_msg=f"{case} {key}")


@pytest.mark.parametrize("case", ["node_clip", "graph_clip"])
def test_the_row_clip_fires_in_the_clip_cases(case, monkeypatch):
  monkeypatch.setattr(n2, "ROW_CLIP", np.inf)
  with jax.enable_x64():
    unclipped = jax.nn.log_softmax(nnx.jit(lambda m, b: m(b))(_model(case), _input(case)))
  assert np.abs(unclipped - REF[f"{case}/logp"]).max() > 1e-2


def test_proximity_equals_the_copy_sum_by_brute_force():
  rng = np.random.default_rng(0)
  lam = rng.normal(size=3)
  a1, a3 = rng.normal(size=(1, 4, 5)), rng.normal(size=(3, 4, 5))
  b1, b3 = rng.normal(size=(1, 6, 5)), rng.normal(size=(3, 6, 5))
  for a, b in ((a1, b1), (a1, b3), (a3, b1), (a3, b3)):
    want = sum(lam[c] * a[min(c, len(a) - 1)] @ b[min(c, len(b) - 1)].T for c in range(3)) / 15
    np.testing.assert_allclose(n2.proximity(a, b, lam, 5), want, rtol=1e-5, atol=1e-6)


def test_padding_size_and_parameters_independent_of_depth():
  model = _model("graph")
  batch = _input("graph")
  bigger = [graphs.pad_graph(REF[f"graph/x{i}"], REF[f"graph/edge_index{i}"][1],
                             REF[f"graph/edge_index{i}"][0], max_nodes=11, max_edges=16)
            for i in range(3)]
  bigger = {k: np.stack([p[k] for p in bigger]) for k in bigger[0]}
  bigger["x"][:, 8:] = 100.0  # garbage in padding rows must not matter
  forward = nnx.jit(lambda m, b: m(b))
  np.testing.assert_allclose(forward(model, bigger), forward(model, batch), rtol=1e-5, atol=1e-5)
  count = [sum(x.size for x in jax.tree.leaves(nnx.state(models.build("n2_graph", **{
      **DIMS, "T": t}), nnx.Param))) for t in (1, 4)]
  assert count[0] == count[1]

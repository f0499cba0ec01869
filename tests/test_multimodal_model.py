"""Audio-visual model, losses, av_demo data and the multimodal task, against NumPy references."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import models
from losses import multimodal as mml
from ml_pipelines import data
from ml_pipelines.trainer import config as config_lib
from ml_pipelines.tasks import multimodal as task_lib

B, C = 4, 5


def _model(fusion, **kw):
  return models.build("av_small", num_classes=C, fusion=fusion, width=4, depths=(1, 0, 0, 0),
                    rngs=nnx.Rngs(0), **kw)


def _inputs(seed=0, t=2):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.standard_normal((B, 8, 8, 1)), jnp.float32),
          jnp.asarray(r.standard_normal((B, t, 8, 8, 3)), jnp.float32))


def _np(x):
  return np.asarray(x, np.float64)


@pytest.mark.parametrize("fusion", ["sum", "concat", "film", "gated"])
def test_fusion_heads_match_numpy(fusion):
  m = _model(fusion)
  m.eval()
  a_in, v_in = _inputs()
  out = m(a_in, v_in)
  a, v = _np(out["features"]["audio"]), _np(out["features"]["visual"])
  f = m.fusion
  lin = lambda l, x: x @ _np(l.kernel[...]) + _np(l.bias[...])
  if fusion == "sum":
    ref = lin(f.fc_x, a) + lin(f.fc_y, v)
    np.testing.assert_allclose(_np(out["modality_logits"]["audio"]), lin(f.fc_x, a), atol=1e-5)
  elif fusion == "concat":
    w, b = _np(f.fc_out.kernel[...]), _np(f.fc_out.bias[...])
    ref = np.concatenate([a, v], 1) @ w + b
    d = a.shape[1]
    np.testing.assert_allclose(_np(out["modality_logits"]["audio"]), a @ w[:d] + b / 2, atol=1e-5)
    np.testing.assert_allclose(_np(out["modality_logits"]["visual"]), v @ w[d:] + b / 2, atol=1e-5)
  elif fusion == "film":
    gb = lin(f.fc, a)
    d = a.shape[1]
    ref = lin(f.fc_out, gb[:, :d] * v + gb[:, d:])
  else:
    ref = lin(f.fc_out, 1 / (1 + np.exp(-lin(f.fc_x, a))) * lin(f.fc_y, v))
  np.testing.assert_allclose(_np(out["logits"]), ref, atol=1e-5)
  if fusion in ("film", "gated"):  # separate heads give the modality logits
    np.testing.assert_allclose(_np(out["modality_logits"]["audio"]),
                               lin(m.audio_head.layers[0], a), atol=1e-5)


def test_visual_features_pool_over_frames():
  """[B, T, ...] frames: the mean over T of each frame's spatially pooled features (eval mode)."""
  m = _model("concat")
  m.eval()
  a_in, v_in = _inputs(t=3)
  out = m(a_in, v_in)["features"]["visual"]
  per_frame = [np.mean(_np(m.visual_encoder.features(v_in[:, i])), axis=(1, 2)) for i in range(3)]
  np.testing.assert_allclose(_np(out), np.mean(per_frame, 0), atol=1e-5)
  out_swapped = m(a_in, v_in[:, ::-1])["features"]["visual"]
  np.testing.assert_allclose(_np(out_swapped), _np(out), atol=1e-5)


def test_head_inputs_are_batch_means_of_dense_inputs():
  m = _model("concat", modality_heads=True, head_hidden=(6,))
  m.eval()
  out = m(*_inputs())
  a = _np(out["features"]["audio"])
  hid = np.maximum(a @ _np(m.audio_head.layers[0].kernel[...]) + _np(m.audio_head.layers[0].bias[...]), 0)
  np.testing.assert_allclose(_np(out["head_inputs"]["audio_head/layers/0/kernel"]), a.mean(0), atol=1e-5)
  np.testing.assert_allclose(_np(out["head_inputs"]["audio_head/layers/1/kernel"]), hid.mean(0), atol=1e-5)
  ref = hid @ _np(m.audio_head.layers[1].kernel[...]) + _np(m.audio_head.layers[1].bias[...])
  np.testing.assert_allclose(_np(out["modality_logits"]["audio"]), ref, atol=1e-5)


def test_cross_entropies_match_numpy():
  r = np.random.default_rng(1)
  logits, y = r.standard_normal((6, C)), r.integers(0, C, 6)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -logp[np.arange(6), y]
  np.testing.assert_allclose(mml.cross_entropy(jnp.asarray(logits), jnp.asarray(y)), ce, rtol=1e-5)
  perm = r.permutation(6)
  got = mml.mixup_cross_entropy(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(perm), 0.3)
  np.testing.assert_allclose(got, 0.3 * ce - 0.7 * logp[np.arange(6), y[perm]], rtol=1e-5)
  x = jnp.asarray(r.standard_normal((6, 3)), jnp.float32)
  mixed, p, lam = mml.mixup(jax.random.key(0), x, 1.0)
  np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[p], rtol=1e-5)
  assert 0 < float(lam) < 1 and sorted(np.asarray(p).tolist()) == list(range(6))


def test_av_demo_is_deterministic_and_imbalanced_by_construction():
  cfg = ml_collections.ConfigDict(dict(name="av_demo", train_size=400, test_size=100))
  ds = data.get("av_demo")(cfg, "train")
  again = data.get("av_demo")(ml_collections.ConfigDict(dict(name="av_demo", train_size=400,
                                                             test_size=100)), "train")
  np.testing.assert_array_equal(ds.source.arrays["visual"], again.source.arrays["visual"])
  arr = ds.source.arrays
  # audio: the brightest frequency row names the class it carries; right ~87% of the time (0.85 + 0.15 / 10).
  bands = np.linspace(0, 15, 10).round().astype(int)
  band = arr["audio"][..., 0].mean(2).argmax(1)
  audio_pred = np.array([np.argmin(np.abs(bands - b)) for b in band])
  assert 0.8 < np.mean(audio_pred == arr["label"]) < 0.92
  # visual: the nearest class mean (oracle templates) is right far more often than chance.
  x = arr["visual"].reshape(len(arr["label"]), 2, -1).mean(1)
  means = np.stack([x[arr["label"] == k].mean(0) for k in range(10)])
  visual_pred = np.argmax(x @ means.T - 0.5 * (means ** 2).sum(1), 1)
  assert np.mean(visual_pred == arr["label"]) > 0.9


def _task(**opts):
  c = config_lib.load("configs/multimodal/vanilla.py:demo,concat")
  c.model.num_classes = C
  c.task.update(opts)
  return task_lib.Multimodal(c)


def test_task_losses_and_tx_args():
  m = _model("concat")
  a_in, v_in = _inputs()
  y = jnp.asarray([0, 1, 2, 3])
  batch = {"audio": a_in, "visual": v_in, "label": y}
  loss, aux = _task().loss(m, batch, jax.random.key(0), None, jnp.int32(0))
  assert set(aux["tx_args"]) == {"modality_logits", "labels", "modality_features"}
  assert "grad_terms" not in aux
  loss2, aux2 = _task(unimodal_loss_weight=0.5, grad_terms=True).loss(
      m, batch, jax.random.key(0), None, jnp.int32(0))
  np.testing.assert_allclose(float(loss2), float(loss) + 0.5 * (float(aux2["grad_terms"]["audio"])
                                                                + float(aux2["grad_terms"]["visual"])),
                             rtol=1e-5)
  loss3, _ = _task(gblending_weights=(0.2, 0.3, 0.5)).loss(m, batch, jax.random.key(0), None, 0)
  np.testing.assert_allclose(float(loss3), 0.2 * float(aux2["grad_terms"]["audio"])
                             + 0.3 * float(aux2["grad_terms"]["visual"]) + 0.5 * float(loss),
                             rtol=1e-5)
  # eval mode: eval_metrics gives per-example fused and unimodal correctness
  m.eval()
  out = m(a_in, v_in)
  fused = np.mean(_np(mml.cross_entropy(out["logits"], y)))
  ev = _task().eval_metrics(m, batch)
  np.testing.assert_allclose(np.mean(_np(ev["loss"])), fused, rtol=1e-5)
  np.testing.assert_array_equal(_np(ev["audio_accuracy"]),
                                np.argmax(_np(out["modality_logits"]["audio"]), 1) == _np(y))


def test_mie_loss_trains_only_the_stage_modality():
  m = _model("concat", modality_heads=True, head_hidden=(6,))
  batch = dict(zip(("audio", "visual"), _inputs()), label=jnp.asarray([0, 1, 2, 3]))
  from ml_pipelines.trainer import stages as stages_lib
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  groups = {"audio": "audio_(encoder|head)/", "visual": "visual_(encoder|head)/"}
  kernels = {f"{h}_head/layers/{i}/kernel" for h in ("audio", "visual") for i in (0, 1)}

  def task_for(modality, collect):
    task = _task(mie_modality=modality, mie_mixup_alpha=1.0, mie_collect_steps=collect)
    task.mie_groups = groups
    task.stage = stages_lib.Stage(0, modality, 0, 4, None, True, 0)
    return task
  extra = task_for("audio", 1).init_extra(None, None, params)
  assert set(extra["mie"]["moments"]) == kernels

  def grads(task):
    def f(model):
      return task.loss(model, batch, jax.random.key(0), extra, jnp.int32(0))[0]
    g = nnx.grad(f)(m)
    return {k: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(getattr(g, k))))
            for k in ("audio_head", "visual_head", "fusion")}
  ga, gv = grads(task_for("audio", 1)), grads(task_for("visual", 1))
  assert ga["audio_head"] > 0 and ga["visual_head"] == 0 and ga["fusion"] == 0
  assert gv["visual_head"] > 0 and gv["audio_head"] == 0
  stats = lambda enc: [np.asarray(x) for x in jax.tree.leaves(nnx.state(enc, nnx.BatchStat))]
  idle, trained = stats(m.visual_encoder), stats(m.audio_encoder)
  for collect, step in ((1, 3), (1, 2), (0, 0)):  # in the stage's last step, before it, always
    task = task_for("audio", collect)
    _, aux = task.loss(m, batch, jax.random.key(0), extra, jnp.int32(step))
    moments = aux["extra"]["mie"]["moments"]
    grew = {q for q in kernels if float(jnp.abs(moments[q]).sum()) > 0}
    assert grew == ({q for q in kernels if q.startswith("audio")} if step != 2 else set())
  for a, b in zip(stats(m.visual_encoder), idle):  # the idle branch's statistics stay (official)
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(stats(m.audio_encoder), trained))
  assert set(aux["tx_args"]["mie_projectors"]) == {q for q in kernels if q.startswith("audio")}
  assert int(aux["tx_args"]["mie_modality"]) == 0


def test_pmr_prototypes_follow_batch_class_means():
  m = _model("concat")
  batch = dict(zip(("audio", "visual"), _inputs()), label=jnp.asarray([0, 0, 1, 1]))
  task = _task(pmr_alpha=0.6, pmr_momentum=0.2)
  d = m.audio_encoder.num_features
  old = {"pmr": {k: jnp.ones((C, d)) for k in ("audio", "visual")}}
  m.eval()
  feats = m(batch["audio"], batch["visual"])["features"]
  loss, aux = task.loss(m, batch, jax.random.key(0), old, jnp.int32(0))
  a = _np(feats["audio"])
  np.testing.assert_allclose(_np(aux["extra"]["pmr"]["audio"][0]), 0.8 * a[:2].mean(0) + 0.2,
                             atol=1e-5)
  np.testing.assert_allclose(_np(aux["extra"]["pmr"]["audio"][4]), np.ones(d), atol=1e-6)
  coef = (float(aux["metrics"]["pmr_audio_coef"]), float(aux["metrics"]["pmr_visual_coef"]))
  assert sorted(np.round(coef, 5).tolist()) in ([0.0, 0.6], [0.0, 0.0])


class _ScriptedEnv:
  """Returns the scripted per-example head losses for each `predict` call, in order."""

  def __init__(self, outputs):
    self.outputs, self.splits = list(outputs), []

  def predict(self, state, fn, split, indices=None):
    self.splits.append(split)
    return self.outputs.pop(0)


def _head_losses(a, v, f):
  return {"audio_ce": np.full(4, a), "visual_ce": np.full(4, v), "fused_ce": np.full(4, f)}


def test_gblending_reestimates_weights_from_generalisation_and_overfitting():
  task = _task(gblending_every=5, gblending_val_split="val")
  state = {"extra": task.init_extra(None, jax.random.key(0), None)}
  tr1, va1 = (1.0, 2.0, 0.9), (1.2, 2.1, 1.1)
  tr2, va2 = (0.5, 1.8, 0.4), (0.9, 2.2, 0.8)   # visual's validation loss rises: G < 0
  tr3, va3 = (0.4, 1.7, 0.3), (1.0, 2.3, 0.9)   # every head gets worse: no positive weight
  env = _ScriptedEnv([_head_losses(*x) for x in (tr1, va1, tr2, va2, tr3, va3)])
  assert task.after_step(env, state, 3) is state
  state = task.after_step(env, state, 5)           # first estimate: weights stay equal
  np.testing.assert_allclose(_np(state["extra"]["gblend"]["weights"]), np.full(3, 1 / 3), rtol=1e-6)
  state = task.after_step(env, state, 10)
  g = np.subtract(va1, va2)
  o = (np.subtract(va2, tr2)) - (np.subtract(va1, tr1))
  w = np.maximum(g / o ** 2, 0)
  np.testing.assert_allclose(_np(state["extra"]["gblend"]["weights"]), w / w.sum(), rtol=1e-5)
  assert float(state["extra"]["gblend"]["weights"][1]) == 0.0
  state = task.after_step(env, state, 15)          # nothing positive: previous weights kept
  np.testing.assert_allclose(_np(state["extra"]["gblend"]["weights"]), w / w.sum(), rtol=1e-5)
  assert env.splits == ["train", "val"] * 3
  # the loss uses the current weights from the state
  m = _model("concat")
  batch = dict(zip(("audio", "visual"), _inputs()), label=jnp.asarray([0, 1, 2, 3]))
  loss, aux = task.loss(m, batch, jax.random.key(0), state["extra"], jnp.int32(0))
  heads = np.asarray([float(aux["metrics"][k]) for k in ("audio_loss", "visual_loss", "fused_loss")])
  np.testing.assert_allclose(float(loss), float(np.dot(w / w.sum(), heads)), rtol=1e-5)


def test_umt_teacher_features_and_distillation_loss():
  student = _model("concat")
  teacher_model = models.build("av_small", num_classes=C, fusion="concat", width=4,
                             depths=(1, 0, 0, 0), rngs=nnx.Rngs(7))
  r = np.random.default_rng(3)
  for path, var in nnx.iter_graph(teacher_model):   # non-trivial running statistics
    if isinstance(var, nnx.BatchStat):
      var.value = jnp.asarray(r.uniform(0.5, 1.5, var.value.shape), jnp.float32)
  params = nnx.to_pure_dict(nnx.state(teacher_model, nnx.Param))
  stats = nnx.to_pure_dict(nnx.state(teacher_model, nnx.BatchStat))
  teachers = {m: {"params": params[f"{m}_encoder"], "rest": stats[f"{m}_encoder"]}
              for m in ("audio", "visual")}
  a_in, v_in = _inputs()
  batch = {"audio": a_in, "visual": v_in, "label": jnp.asarray([0, 1, 2, 3])}
  before = student(a_in, v_in)["features"]
  task = _task(umt_teachers={"audio": "unused", "visual": "unused"}, umt_weight=10.0)
  got = {m: task.teacher_features(student, m, teachers[m], batch[m]) for m in ("audio", "visual")}
  teacher_model.eval()
  want = teacher_model(a_in, v_in)["features"]
  for m in ("audio", "visual"):
    np.testing.assert_allclose(_np(got[m]), _np(want[m]), rtol=1e-5, atol=1e-6)
  after = student(a_in, v_in)["features"]        # the student module is left as it was
  for m in ("audio", "visual"):
    np.testing.assert_allclose(_np(after[m]), _np(before[m]), rtol=1e-6)
    assert not np.allclose(_np(after[m]), _np(want[m]))
  loss, aux = task.loss(student, batch, jax.random.key(0), {"umt": teachers}, jnp.int32(0))
  out = student(a_in, v_in)
  ce = np.mean(_np(mml.cross_entropy(out["logits"], batch["label"])))
  mse = sum(np.mean((_np(out["features"][m]) - _np(want[m])) ** 2) for m in ("audio", "visual"))
  np.testing.assert_allclose(float(loss), ce + 10.0 * mse, rtol=1e-4)


def test_gelu_resnet_matches_official_amss_backbone():
  """activation="gelu": the official AMSS ResNet-18 (njustkmg/TPAMI-AMSS AMSS/backbone.py, nn.GELU)
  stem and BasicBlocks in eval mode, from tests/fixtures/multimodal/amss_backbone.npz."""
  import os
  from models import resnet
  z = np.load(os.path.join(os.path.dirname(__file__), "fixtures/multimodal/amss_backbone.npz"))

  def bn(prefix):
    return ({"scale": z[f"{prefix}.weight"], "bias": z[f"{prefix}.bias"]},
            {"mean": z[f"{prefix}.running_mean"], "var": z[f"{prefix}.running_var"]})

  def conv(name):
    return {"kernel": np.transpose(z[name], (2, 3, 1, 0))}

  def build(make, params, stats):
    graphdef = nnx.split(nnx.eval_shape(make))[0]
    model = nnx.merge(graphdef, jax.tree_util.tree_map(jnp.asarray, _deep(params, stats)))
    model.eval()
    return model

  def _deep(a, b):
    return {k: _deep(a.get(k, {}), b.get(k, {})) if isinstance(a.get(k, b.get(k)), dict)
            else a.get(k, b.get(k)) for k in set(a) | set(b)}

  kw = dict(dtype=jnp.float32, activation="gelu")
  (p1, s1) = bn("stem/1")
  stem = build(lambda: resnet.ResNet("basic", (0, 0, 0, 0), in_channels=1, num_classes=None,
                                     width=64, rngs=nnx.Rngs(0), **kw),
               {"conv1": conv("stem/0.weight"), "bn1": p1}, {"bn1": s1})
  x = np.transpose(z["stem/input"], (0, 2, 3, 1))
  np.testing.assert_allclose(np.asarray(stem.features(jnp.asarray(x))),
                             np.transpose(z["stem/output"], (0, 2, 3, 1)), rtol=1e-4, atol=1e-5)
  for name, (cin, cout, stride) in {"block0": (8, 8, 1), "block1": (8, 16, 2)}.items():
    params, stats = {}, {}
    for ours, theirs in (("conv1", "conv1"), ("conv2", "conv2"),
                         ("downsample_conv", "downsample.0")):
      if f"{name}/{theirs}.weight" in z:
        params[ours] = conv(f"{name}/{theirs}.weight")
    for ours, theirs in (("bn1", "bn1"), ("bn2", "bn2"), ("downsample_bn", "downsample.1")):
      if f"{name}/{theirs}.weight" in z:
        params[ours], stats[ours] = bn(f"{name}/{theirs}")
    block = build(lambda: resnet.BasicBlock(cin, cout, stride, rngs=nnx.Rngs(0), **kw), params,
                  stats)
    x = np.transpose(z[f"{name}/input"], (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(block(jnp.asarray(x))),
                               np.transpose(z[f"{name}/output"], (0, 2, 3, 1)), rtol=1e-4,
                               atol=1e-5, err_msg=name)


@pytest.mark.parametrize("method", ["ogm_ge", "amss", "mmpareto", "pmr", "agm", "mie"])
def test_recipes_follow_official_scripts(method):
  """Official scripts: SGD(model.parameters(), weight_decay=1e-4), BatchNorm scales and biases
  included; AMSS StepLR(60) of 80 epochs with GELU encoders; MMPareto lr 2e-3, 50 epochs,
  StepLR(30), separate unimodal heads (code/MMPareto.py argparse defaults)."""
  from optim import chain
  c = config_lib.load(f"configs/multimodal/{method}.py:cremad,concat")
  spe = 6698 // c.batch_size
  # no transform: the base chain's decay alone, on a BatchNorm scale with a zero gradient
  o = ml_collections.ConfigDict({k: v for k, v in c.optimizer.items()
                                 if k not in c.optimizer.transforms})
  o.transforms = ()
  tx = chain.build_chain(o, c.total_steps)
  params = {"audio_encoder": {"bn1": {"scale": jnp.ones(3)}}}
  upd, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(_np(upd["audio_encoder"]["bn1"]["scale"]),
                             -float(c.optimizer.learning_rate) * 1e-4, rtol=1e-5)
  lr = chain.schedule(c.optimizer, c.total_steps)
  want = {"amss": (0.01, 80, 60), "mmpareto": (2e-3, 50, 30), "ogm_ge": (1e-3, 100, 70),
          "pmr": (1e-3, 100, 70), "agm": (1e-3, 100, 70)}.get(method)
  if want:
    base, epochs, step_at = want
    assert c.total_steps == epochs * spe
    np.testing.assert_allclose([float(lr(step_at * spe - 1)), float(lr(step_at * spe + 1))],
                               [base, base * 0.1], rtol=1e-6)
  assert c.model.activation == ("gelu" if method == "amss" else "relu")
  assert c.model.modality_heads == (method in ("mmpareto", "mie"))

"""DSA's model, the FreeMatch task through the trainer, and its semi-supervised data path."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
from flax import nnx

import models
from losses import ssl
from ml_pipelines import data, train
from ml_pipelines.data import augment, samplers
from ml_pipelines.tasks.freematch import FreeMatch
from ml_pipelines.trainer import config as config_lib
from models import dsa
from tests.test_trainer import interrupted

TINY = dict(name="dsa_wrn", depth=10, widen_factor=1, num_classes=10, adapter_widths=(8, 16, 16, 8),
            bn_momentum=0.9)


def tiny_config(**overrides):
  c = config_lib.load("configs/ssl/dsa_freematch.py:digits")
  c.model = dict(TINY)
  c.batch_size, c.eval_batch_size = 8, 40
  c.data.image_size = 8
  c.data.sampler.ratio = 1
  c.total_steps, c.checkpoint_every, c.log_every, c.eval_every = 8, 4, 4, 0
  c.ema_decay = 0.9
  c.task.steps_per_epoch, c.task.warmup_steps, c.task.count_thr_rampup = 3, 2, 2
  for k, v in overrides.items():
    config_lib.override(c, [f"{k}={v!r}"])
  return c


def _flat(tree):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


# --- resume ---------------------------------------------------------------------------------------
def test_resume_mid_run_is_bit_exact_with_freematch_state(tmp_path):
  """Killed after step 6 (checkpoint at 4), resumed to 8: parameters, BN statistics, noise RNG
  counters, EMA, optimizer state and the per-head FreeMatch state equal an uninterrupted run."""
  ref = train.train_and_evaluate(tiny_config(), str(tmp_path / "ref"))["state"]
  interrupted(tiny_config(), tmp_path / "resumed", stop_after=6)
  out = train.train_and_evaluate(tiny_config(), str(tmp_path / "resumed"))["state"]
  assert int(out["step"]) == 8
  assert set(out["extra"]) == {"tau", "p", "hist"} and out["extra"]["p"].shape == (5, 10)
  assert not np.allclose(out["extra"]["tau"], 0.1)  # the state moved off its initial 1/K
  for part in ("params", "rest", "extra", "ema_params", "opt_state"):
    a, b = _flat(ref[part]), _flat(out[part])
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=f"{part}/{k}")


# --- model ----------------------------------------------------------------------------------------
def _paths(model, kind):
  return set(_flat(nnx.to_pure_dict(nnx.state(model, kind))))


def _jit_build(make):
  """`make()` initialised under one jit (eager initialisation compiles every small op alone)."""
  graphdef, _ = nnx.split(nnx.eval_shape(make))
  return nnx.merge(graphdef, jax.jit(lambda: nnx.split(make())[1])())


_apply = nnx.jit(lambda m, x: m(x))


def test_official_mode_keeps_projections_fixed_and_stochastic_at_test():
  official = nnx.eval_shape(lambda: models.build(TINY, seed=0))
  params = _paths(official, nnx.Param)
  assert not any("adapters" in k or k.startswith("multi_head/pre") for k in params)
  assert any(k.startswith("multi_head/heads/4") for k in params)
  assert "multi_head/adapters/4/layers/0/kernel" in _paths(official, dsa.Fixed)
  paper = nnx.eval_shape(lambda: models.build({**TINY, "train_adapters": True}, seed=0))
  assert "multi_head/adapters/0/layers/0/kernel" in _paths(paper, nnx.Param)

  def head(train_adapters):
    return _jit_build(lambda: dsa.MultiHead(16, 10, adapter_widths=(64, 64, 64, 64),
                                            train_adapters=train_adapters,
                                            rngs=nnx.Rngs(params=0, noise=1)))
  m = head(False)
  fixed = _flat(nnx.to_pure_dict(nnx.state(m, dsa.Fixed)))
  # Init schemes by stream (initStrategy.ms_adapter_initialize): N(0, 1e-3) for streams 0/1,
  # N(0, 1) kernels and biases for stream 4, torch's uniform for stream 3.
  assert np.std(fixed["adapters/0/layers/1/kernel"]) < 2e-3
  assert 0.8 < np.std(fixed["adapters/4/layers/1/kernel"]) < 1.2
  assert 0.5 < np.std(fixed["adapters/4/layers/1/bias"]) < 1.5
  k3 = fixed["adapters/3/layers/1/kernel"]
  assert np.abs(k3).max() <= 1 / np.sqrt(k3.shape[0]) + 1e-7
  x = jax.random.normal(jax.random.key(0), (6, 4, 4, 16))
  m.eval()
  assert not np.allclose(_apply(m, x), _apply(m, x))  # noise and RReLU act at test, as the code
  p = head(True)
  p.eval()
  np.testing.assert_array_equal(_apply(p, x), _apply(p, x))


def test_wrn28_parameter_counts():
  """FixMatch's WRN-28-2 has 1.47M parameters and WRN-28-8 23.4M (FixMatch paper, Sec. 4)."""
  count = lambda n, k: sum(x.size for x in jax.tree_util.tree_leaves(  # noqa: E731
      nnx.state(nnx.eval_shape(lambda: models.build(n, num_classes=k)), nnx.Param)))
  assert count("wrn28_2", 10) == 1_467_418
  assert count("wrn28_8", 100) == 23_400_244


# --- task -----------------------------------------------------------------------------------------
class _Heads(nnx.Module):
  """Fixed per-head logits, looked up by the first pixel of each image (an example id)."""

  def __init__(self, logits):
    self.logits = nnx.Variable(jnp.asarray(logits))

  def __call__(self, x):
    return self.logits[...][:, x[:, 0, 0, 0].astype(jnp.int32)]


def _np_ce(logits, t):
  z = logits - logits.max(-1, keepdims=True)
  return -(z[np.arange(len(t)), t] - np.log(np.exp(z).sum(-1)))


@pytest.mark.parametrize("step", [0, 1, 40])
def test_task_loss_matches_numpy(step):
  """L_x skips the blank head (step mod S), the full loss starts after warmup_steps, the ensemble
  loss uses kept pseudo-labels on the strong view, the state advances."""
  c = tiny_config(**{"task.warmup_steps": 1, "task.steps_per_epoch": 1024})
  task = FreeMatch(c)
  s, b, k = 5, task.labeled_batch, 10
  rng = np.random.default_rng(0)
  n = b + 2 * b
  logits = (3 * rng.standard_normal((s, n, k))).astype(np.float32)
  ids = np.arange(n, dtype=np.float32)
  images = np.broadcast_to(ids[:, None, None, None], (n, 2, 2, 3))
  batch = {"image": jnp.asarray(images[:2 * b]),
           "image_strong": jnp.concatenate([jnp.asarray(images[:b]), jnp.asarray(images[2 * b:])]),
           "label": jnp.asarray(rng.integers(0, k, 2 * b), jnp.int32)}
  extra = ssl.freematch_init(k, s)
  loss, aux = task.loss(_Heads(logits), batch, None, extra, jnp.int32(step))
  y = np.asarray(batch["label"][:b])
  keep_heads = [h for h in range(s) if h != step % s]
  loss_x = np.mean([_np_ce(logits[h, :b], y).mean() for h in keep_heads])
  np.testing.assert_allclose(aux["metrics"]["loss_x"], loss_x, rtol=1e-5)
  if step < 1:
    np.testing.assert_allclose(loss, loss_x, rtol=1e-5)
    return
  m = aux["metrics"]
  tau, p, _ = jax.vmap(ssl.freematch_update, in_axes=(0, 0, 0, 0, None))(
      logits[:, b:2 * b], extra["tau"], extra["p"], extra["hist"], 0.999)
  np.testing.assert_allclose(aux["extra"]["tau"], tau, rtol=1e-6)
  masks, _ = jax.vmap(ssl.freematch_mask, in_axes=(0, 0, 0, None))(logits[:, b:2 * b], tau, p, 0.9)
  probs = np.exp(logits[:, b:2 * b]) / np.exp(logits[:, b:2 * b]).sum(-1, keepdims=True)
  t = probs.sum(0).argmax(-1)
  keep = (np.asarray(masks).sum(0) >= 2).astype(np.float32)
  ens = np.mean([(_np_ce(logits[h, 2 * b:], t) * keep).mean() for h in keep_heads])
  np.testing.assert_allclose(m["loss_ens"], ens, rtol=1e-5)
  total = loss_x + 0.05 * m["loss_saf"] + ens + m["loss_mc"]
  np.testing.assert_allclose(loss, total, rtol=1e-5)
  y_u = np.asarray(batch["label"][b:])
  np.testing.assert_allclose(m["pseudo_label_accuracy"],
                             np.sum(keep * (t == y_u)) / max(keep.sum(), 1), rtol=1e-6)
  mask3 = np.asarray(masks[3])
  np.testing.assert_allclose(m["pseudo_label_accuracy_head3"],
                             np.sum(mask3 * (probs[3].argmax(-1) == y_u)) / max(mask3.sum(), 1),
                             rtol=1e-6)


def test_eval_count_weighted_ensemble_ignores_padding_rows():
  c = tiny_config()
  task = FreeMatch(c)
  rng = np.random.default_rng(1)
  logits = rng.standard_normal((5, 6, 10)).astype(np.float32)
  ids = np.arange(6, dtype=np.float32)
  batch = {"image": jnp.asarray(np.broadcast_to(ids[:, None, None, None], (6, 2, 2, 3))),
           "label": jnp.asarray(rng.integers(0, 10, 6), jnp.int32),
           "mask": jnp.asarray([True] * 4 + [False] * 2)}
  out = task.eval_metrics(_Heads(logits), batch)
  preds = logits.argmax(-1)
  mean_pred = logits.mean(0).argmax(-1)
  counts = (preds[:, :4] == mean_pred[None, :4]).sum(1)
  w = np.exp(counts - counts.max())
  w /= w.sum()
  want = (np.einsum("s,sbk->bk", w, logits).argmax(-1) == np.asarray(batch["label"]))
  np.testing.assert_array_equal(out["accuracy_count_weighted"], want)
  np.testing.assert_array_equal(out["accuracy_mean_logit"], mean_pred == np.asarray(batch["label"]))
  pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
  np.testing.assert_allclose(out["disagreement"],
                             np.mean([preds[i] != preds[j] for i, j in pairs], 0), rtol=1e-6)


# --- data -----------------------------------------------------------------------------------------
def test_labeled_unlabeled_sampler(tmp_path):
  labels = np.repeat(np.arange(4), 25)
  s = samplers.build({"name": "labeled_unlabeled", "ratio": 3, "num_labeled": 8}, size=100,
                     global_batch=16, seed=0, stage=0, labels=lambda f: labels)
  labeled = set()
  seen = []
  for step in range(25):
    rows = s.indices(step)
    assert len(rows) == 16
    labeled |= set(rows[:4].tolist())
    seen.append(rows[4:])
  assert len(labeled) == 8 and np.bincount(labels[sorted(labeled)], minlength=4).tolist() == [2] * 4
  assert len(set(np.concatenate(seen[:8]).tolist())) == 96  # 8 steps of 12: one unlabeled epoch
  np.testing.assert_array_equal(s.indices(7), samplers.build(
      {"name": "labeled_unlabeled", "ratio": 3, "num_labeled": 8}, size=100, global_batch=16,
      seed=0, stage=0, labels=lambda f: labels).indices(7))
  # The official split files list positions in the original order; source_index maps them.
  path = tmp_path / "split.json"
  path.write_text(json.dumps([[5, 17, 5, 90], list(range(100))]))
  source = np.arange(100)[::-1]
  s = samplers.build({"name": "labeled_unlabeled", "ratio": 1, "labeled_file": str(path),
                      "source_index": "source_index"}, size=100, global_batch=6, seed=0, stage=0,
                     labels=lambda f: source if f == "source_index" else labels)
  assert set(s.indices(0)[:3].tolist()) == {94, 82, 9}


def test_fixmatch_randaugment_ops_match_pil():
  img = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
  pil = PIL.Image.fromarray(img)

  class Sign:  # draws "positive" for the signed ops
    def random(self):
      return 0.9
  for v in (1, 5, 9):
    f = v / 10 * 0.9 + 0.05
    for name, enhancer in [("brightness", PIL.ImageEnhance.Brightness),
                           ("color", PIL.ImageEnhance.Color),
                           ("contrast", PIL.ImageEnhance.Contrast),
                           ("sharpness", PIL.ImageEnhance.Sharpness)]:
      ours = augment.FIXMATCH_OPS[name](img, v, None).astype(int)
      assert np.abs(ours - np.asarray(enhancer(pil).enhance(f))).max() <= 1, (name, v)
    np.testing.assert_array_equal(augment.FIXMATCH_OPS["posterize"](img, v, None),
                                  PIL.ImageOps.posterize(pil, int(v * 4 / 10) + 4))
    np.testing.assert_array_equal(augment.FIXMATCH_OPS["solarize"](img, v, None),
                                  PIL.ImageOps.solarize(pil, 256 - int(v * 256 / 10)))
    for name, data in [("shear_x", (1, v * 0.03, 0, 0, 1, 0)),
                       ("shear_y", (1, 0, 0, v * 0.03, 1, 0)),
                       ("translate_x", (1, 0, int(v * 0.03 * 10), 0, 1, 0)),
                       ("translate_y", (1, 0, 0, 0, 1, int(v * 0.03 * 12)))]:
      np.testing.assert_array_equal(augment.FIXMATCH_OPS[name](img, v, Sign()),
                                    pil.transform(pil.size, PIL.Image.AFFINE, data), err_msg=name)
  out = augment.cutout(img, np.random.default_rng(3), 4)
  assert (out == 127).all(-1).sum() >= 4 and (out != img).any()


def test_cifar_ssl_reads_tfds_layout_and_the_papers_split(monkeypatch):
  """A fake TFDS `cifar10` train split in TFDS's example layout (id "train_NNNNN" = position in the
  original files, stored in another order): the labeled rows of a batch are exactly the paper's
  40-label split (configs/ssl/splits/cifar10_40.npy), mapped through `source_index`."""
  from ml_pipelines.data import pipeline
  from ml_pipelines.data import ssl as ssl_data
  from ml_pipelines.trainer import config as config_lib

  order = np.random.default_rng(0).permutation(50_000)

  class FakeTfds:
    def __len__(self):
      return len(order)

    def __getitem__(self, i):
      j = int(order[i])
      return {"id": f"train_{j:05d}".encode(), "label": j % 10,
              "image": np.full((32, 32, 3), j % 256, np.uint8)}
  monkeypatch.setattr(ssl_data, "tfds_source", lambda name, split, data_dir: FakeTfds())
  c = config_lib.load("configs/ssl/dsa_freematch.py:cifar10,40")
  ds = data.get(c.data.name)(c.data, "train")
  batches = pipeline.TrainBatches(ds, c.batch_size, c.seed,
                                  stages=[(0, c.data.sampler.to_dict())])
  split = set(np.load("configs/ssl/splits/cifar10_40.npy").tolist())
  assert len(split) == 40
  seen = set()
  for step in range(3):
    rows = batches.global_indices(step)
    assert len(rows) == 256
    seen |= {int(order[i]) for i in rows[:32]}
  assert seen <= split and len(seen) > 32
  batch = batches[0]
  assert batch["image"].shape == batch["image_strong"].shape == (256, 32, 32, 3)
  assert set(batch["source_index"][:32].tolist()) <= split
  np.testing.assert_array_equal(batch["label"], batch["source_index"] % 10)


def test_cosine_cycles_schedule_is_fixmatchs():
  """lr max(0, cos(7 pi t / (16 T))) (kekmodel/FixMatch-pytorch get_cosine_schedule_with_warmup)."""
  import math

  from optim.chain import schedule
  c = config_lib.load("configs/ssl/dsa_freematch.py:cifar10,40").optimizer
  sched = schedule(c, 1000)
  for t in (0, 1, 500, 999):
    np.testing.assert_allclose(sched(t), 0.03 * max(0.0, math.cos(7 * math.pi * t / 16000)),
                               rtol=1e-6)

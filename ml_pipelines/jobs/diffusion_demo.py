"""Embedded diffusion-feature demo (CPU, minutes): a tiny SD-architecture diffusion model on
generated shape scenes, then the two papers' mechanisms on its activations.

    python -m ml_pipelines.jobs.diffusion_demo [--workdir=/tmp/diffusion_demo] [--train_steps=1500]

1. Data: 32x32 scenes of 1-3 coloured shapes (circle, square, triangle) on textured backgrounds
   with per-pixel masks (4 classes).
2. Model: our NNX UNet (`models.diffusion.unet.UNet`, block_out_channels (16, 32), cross-attention
   at 16x16 on a learned caption embedding) in pixel space with the SD scaled-linear 1000-step
   schedule, an extra Sobel-edge input channel (scaled by `EDGE_GAIN`) dropped for half of the
   training examples: the same network is the plain model (edges zeroed) and an edge-conditioned
   "mini-ControlNet".
3. (i) Generic activations (Meng et al. 2024, "Not All Diffusion Model Activations Have Been
   Evaluated"): a per-pixel linear probe on each tapped activation at t = 100 (20 labelled images,
   mIoU on 60 test images), block outputs vs the inner activations; diagnostics: the same probe on
   the input pixels (+ edges), and the best block and inner activation under the pixel-MLP
   ensemble (is the probe too weak?).
   (ii) Content shift (Meng et al. 2024, "Suppress Content Shift"): the one-step reconstruction
   x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar) drifts from the input as t grows; the paper
   expects the edges to steer it back. The last column measures how far the edge channel moves
   x0_hat at all. (iii) GATE: the pixel-classifier ensemble on each variant {plain,
   edge-conditioned, second noise seed} and the GATE aggregator over the three.
Prints the tables and writes `<workdir>/diffusion_demo.png`.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ml_pipelines.jobs import common

LEVEL_IDS = {  # the tiny UNet's activations probed in (i); block outputs first
    "block": ("up-level0-repeat1-res-out", "up-level0-repeat1-vit-out", "up-level0-upsampler-out",
              "up-level1-repeat0-res-out", "up-level1-repeat1-res-out"),
    "inner": ("up-level0-repeat0-vit-block0-self-q", "up-level0-repeat0-vit-block0-self-k",
              "up-level0-repeat0-vit-block0-self-v", "up-level0-repeat0-vit-block0-cross-q",
              "up-level0-repeat0-vit-block0-ffn-inner", "up-level0-repeat1-vit-block0-cross-q",
              "up-level1-repeat1-res-increment", "down-level1-repeat0-vit-block0-self-k"),
}
VARIANT_IDS = ("up-level0-upsampler-out", "up-level0-repeat1-vit-block0-cross-q",
               "up-level1-repeat1-res-out")
PROBE_ID = "up-level0-repeat0-vit-block0-cross-q"
SIZE, CLASSES = 32, 4
# the edge channel enters conv_in scaled up: Sobel magnitudes are ~0 away from boundaries, and with
# unit scale a short run learnt to ignore the channel (RESULTS section 9, first run)
EDGE_GAIN = 4.0


def shapes_scenes(n: int, seed: int):
  """(images uint8 [n, 32, 32, 3], masks int32 [n, 32, 32]): textured background, 1-3 shapes."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:SIZE, :SIZE]
  images = np.empty((n, SIZE, SIZE, 3), np.float32)
  masks = np.zeros((n, SIZE, SIZE), np.int32)
  for i in range(n):
    base, slope = rng.uniform(0.2, 0.8, 3), rng.uniform(-0.3, 0.3, (2, 3))
    img = base + (yy[..., None] / SIZE - 0.5) * slope[0] + (xx[..., None] / SIZE - 0.5) * slope[1]
    img += 0.06 * rng.normal(size=img.shape) + 0.08 * np.sin(xx / rng.uniform(1.5, 4))[..., None]
    for _ in range(rng.integers(1, 4)):
      cls, r = rng.integers(1, 4), rng.integers(4, 8)
      cy, cx = rng.integers(r, SIZE - r, 2)
      if cls == 1:
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
      elif cls == 2:
        m = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
      else:
        m = (yy - cy + r >= 0) & (yy - cy <= r) & (abs(xx - cx) <= (yy - cy + r) / 2)
      img[m] = rng.uniform(0, 1, 3)
      masks[i][m] = cls
    images[i] = img
  return (np.clip(images, 0, 1) * 255).astype(np.uint8), masks


def sobel_edges(images_uint8: np.ndarray) -> np.ndarray:
  """Sobel gradient magnitude of the grey image, scaled to [0, 1] per image: [n, 32, 32, 1]."""
  from scipy import ndimage
  g = images_uint8.astype(np.float32).mean(-1)
  mag = np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=2))
  return (mag / (mag.max(axis=(1, 2), keepdims=True) + 1e-6))[..., None]


def build_model(seed: int):
  from flax import nnx
  import jax.numpy as jnp
  from models.diffusion.unet import UNet

  class EdgeConditionedDiffusion(nnx.Module):
    """The tiny UNet on [x_t, edges] with a learned 4-token caption embedding."""

    def __init__(self, rngs):
      self.unet = UNet(in_channels=4, out_channels=3, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                       cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
                       rngs=rngs)
      self.caption = nnx.Param(0.02 * jnp.ones((1, 4, 32)))

    def __call__(self, x_t, t, edges, taps=frozenset()):
      ctx = jnp.broadcast_to(self.caption[...], (x_t.shape[0], 4, 32))
      return self.unet(jnp.concatenate([x_t, EDGE_GAIN * edges], -1), t, ctx, taps=taps)
  return EdgeConditionedDiffusion(nnx.Rngs(seed))


def train_diffusion(model, images, edges, steps, batch, seed, log):
  """DDPM eps-prediction (Ho et al. 2020, Eq. 14) with 50 % edge dropout; returns the model."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from models.diffusion import schedules
  abar = jnp.asarray(schedules.alphas_cumprod())
  x0_all = jnp.asarray(images.astype(np.float32) / 127.5 - 1)
  e_all = jnp.asarray(edges)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  warmup = min(100, steps // 10)
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0, 1e-3, warmup, max(steps, warmup + 1), 1e-4))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    idx = jax.random.randint(k1, (batch,), 0, x0_all.shape[0])
    x0, e = x0_all[idx], e_all[idx] * jax.random.bernoulli(k2, 0.5, (batch, 1, 1, 1))
    t = jax.random.randint(k3, (batch,), 0, 1000)
    noise = jax.random.normal(k4, x0.shape)
    x_t = schedules.add_noise(x0, noise, t, abar)

    def loss_fn(p):
      eps, _ = nnx.merge(graphdef, p, rest)(x_t, t, e)
      return jnp.mean((eps - noise) ** 2)
    loss, g = jax.value_and_grad(loss_fn)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt, loss
  key = jax.random.key(seed)
  for i in range(steps):
    params, opt, loss = step(params, opt, jax.random.fold_in(key, i))
    if (i + 1) % max(steps // 5, 1) == 0:
      log(f"  diffusion step {i + 1}/{steps}: loss {float(loss):.4f}")
  return nnx.merge(graphdef, params, rest)


def extractor(model, ids):
  """jit fn(images uint8, edges, t, key, use_edges) -> (taps resized to 32x32, x0_hat)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from models.diffusion import schedules
  abar = jnp.asarray(schedules.alphas_cumprod())
  graphdef, state = nnx.split(model)

  @jax.jit
  def fn(state, images, edges, t, key, use_edges):
    m = nnx.merge(graphdef, state)
    x0 = images.astype(jnp.float32) / 127.5 - 1
    noise = jax.random.normal(key, x0.shape)
    x_t = schedules.add_noise(x0, noise, t, abar)
    eps, taps = m(x_t, t, edges * use_edges, taps=frozenset(ids))
    a = abar[t]
    x0_hat = (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
    feats = {k: jax.image.resize(v, (v.shape[0], SIZE, SIZE, v.shape[-1]), "bilinear")
             for k, v in taps.items()}
    return feats, x0_hat
  return lambda *a: fn(state, *a)


def probe_miou(train_x, train_y, test_x, test_y, steps=150, seed=0):
  """Per-pixel softmax regression (Adam, full batch, standardised inputs) -> test mIoU."""
  import jax
  import jax.numpy as jnp
  import optax
  from ml_pipelines.evaluators import segmentation
  x = train_x.reshape(-1, train_x.shape[-1])
  mu, sd = x.mean(0), x.std(0) + 1e-5
  x, y = jnp.asarray((x - mu) / sd), jnp.asarray(train_y.reshape(-1))
  w = {"w": jnp.zeros((x.shape[1], CLASSES)), "b": jnp.zeros(CLASSES)}
  tx = optax.adam(0.05)
  opt = tx.init(w)

  @jax.jit
  def step(w, opt):
    g = jax.grad(lambda w: optax.softmax_cross_entropy_with_integer_labels(
        x @ w["w"] + w["b"], y).mean() + 1e-4 * jnp.sum(w["w"] ** 2))(w)
    u, opt = tx.update(g, opt)
    return optax.apply_updates(w, u), opt
  for _ in range(steps):
    w, opt = step(w, opt)
  xt = (test_x.reshape(-1, test_x.shape[-1]) - mu) / sd
  pred = np.asarray(jnp.argmax(jnp.asarray(xt) @ w["w"] + w["b"], -1))
  cm = segmentation.update(np.zeros((CLASSES, CLASSES), np.int64), test_y.reshape(-1), pred)
  return segmentation.mean_iou(cm)


def head_miou(train_x, train_y, test_x, test_y, gate, steps=400, seed=0):
  """The pixel-classifier ensemble (3 members; GATE aggregator over the variant axis when `gate`)
  -> test mIoU of the majority vote. x: [n, 32, 32, V, D]."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from losses import diffusion as losses
  from ml_pipelines.evaluators import segmentation
  from models.diffusion.heads import PixelEnsemble, majority_vote
  v, d = train_x.shape[-2:]
  x, y = train_x.reshape(-1, v, d), train_y.reshape(-1)
  mu, sd = x.mean((0, 1)), x.std((0, 1)) + 1e-5
  x = jnp.asarray((x - mu) / sd)
  model = PixelEnsemble(CLASSES, d, v, members=3, gate=gate, rngs=nnx.Rngs(seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, rest, opt, key):
    idx = jax.random.randint(key, (256,), 0, x.shape[0])
    m = nnx.merge(graphdef, params, rest)

    def loss_fn(m):
      logits, sp = m(x[idx])
      ce = jax.vmap(lambda l: optax.softmax_cross_entropy_with_integer_labels(
          l, jnp.asarray(y)[idx]).mean())(logits)
      return (jax.vmap(losses.with_sparsity)(ce, sp, jnp.full(ce.shape, 1e-4)).sum()
              if gate else ce.sum())
    g = nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))(m)  # updates the BN statistics
    _, params, rest = nnx.split(m, nnx.Param, ...)
    u, opt = tx.update(g, opt)
    return optax.apply_updates(params, u), rest, opt
  key = jax.random.key(seed)
  for i in range(steps):
    params, rest, opt = step(params, rest, opt, jax.random.fold_in(key, i))
  m = nnx.merge(graphdef, params, rest)
  m.eval()
  xt = jnp.asarray((test_x.reshape(-1, v, d) - mu) / sd)
  pred = np.asarray(jax.jit(lambda a: majority_vote(m(a)[0]))(xt))
  cm = segmentation.update(np.zeros((CLASSES, CLASSES), np.int64), test_y.reshape(-1), pred)
  return segmentation.mean_iou(cm)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="/tmp/diffusion_demo")
  p.add_argument("--train_steps", type=int, default=1500)
  p.add_argument("--train_images", type=int, default=3000)
  p.add_argument("--labelled", type=int, default=20)
  p.add_argument("--test", type=int, default=60)
  p.add_argument("--t", type=int, default=100)
  p.add_argument("--batch", type=int, default=16)
  args = p.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  import jax
  start = time.time()
  log = lambda s: print(f"[{time.time() - start:6.1f}s] {s}", flush=True)
  images, _ = shapes_scenes(args.train_images, 0)
  model = train_diffusion(build_model(0), images, sobel_edges(images), args.train_steps,
                          args.batch, 0, log)
  lab_img, lab_y = shapes_scenes(args.labelled, 1)
  test_img, test_y = shapes_scenes(args.test, 2)
  ids = tuple(dict.fromkeys(LEVEL_IDS["block"] + LEVEL_IDS["inner"] + VARIANT_IDS))
  fn = extractor(model, ids)
  key = jax.random.key(1)

  def feats(imgs, t, use_edges, seed=0):
    out = fn(imgs, sobel_edges(imgs), t, jax.random.fold_in(key, seed), float(use_edges))
    return {k: np.asarray(v) for k, v in out[0].items()}, np.asarray(out[1])

  # (i) per-activation probes at t
  tr, _ = feats(lab_img, args.t, False)
  te, _ = feats(test_img, args.t, False)
  rows_i = []
  for kind, group in LEVEL_IDS.items():
    for k in group:
      rows_i.append([k, kind, tr[k].shape[-1], f"{probe_miou(tr[k], lab_y, te[k], test_y):.3f}"])
  # baselines: the same probe on the input pixels (colour, + Sobel edges) tells whether the
  # activations carry anything beyond per-pixel colour, i.e. whether the model learnt shapes
  pix = lambda im: np.concatenate([im / 255.0, sobel_edges(im)], -1)
  rows_i.append(["input RGB + Sobel edges", "baseline", 4,
                 f"{probe_miou(pix(lab_img), lab_y, pix(test_img), test_y):.3f}"])
  best = {kind: max((r for r in rows_i if r[1] == kind), key=lambda r: float(r[3]))[0]
          for kind in LEVEL_IDS}
  for kind, k in best.items():  # the stronger probe: the pixel-MLP ensemble
    score = head_miou(tr[k][..., None, :], lab_y, te[k][..., None, :], test_y, False)
    rows_i.append([k, f"best {kind}, MLP ensemble", tr[k].shape[-1], f"{score:.3f}"])
  log("probes done")
  print(f"\n(i) Linear probe per activation, t = {args.t} ({args.labelled} labelled images, "
        f"mIoU on {args.test}):")
  print(common.markdown_table(["activation", "kind", "channels", "mIoU"], rows_i), flush=True)
  # (ii) content shift vs t: reconstruction error and a probe, plain vs edge-conditioned
  rows_ii, recon = [], {}
  x0 = test_img.astype(np.float32) / 127.5 - 1
  for t in (10, 50, 100, 250, 500, 800):
    row, xhats = [t], []
    for use_edges in (False, True):
      ftr, _ = feats(lab_img, t, use_edges)
      fte, xhat = feats(test_img, t, use_edges)
      recon[(t, use_edges)] = xhat[:4]
      xhats.append(xhat)
      k = PROBE_ID
      row += [f"{np.mean((xhat - x0) ** 2):.4f}",
              f"{probe_miou(ftr[k], lab_y, fte[k], test_y):.3f}"]
    # same noise in both: how much the edge channel moves the prediction at all
    row.append(f"{np.mean((xhats[1] - xhats[0]) ** 2):.2e}")
    rows_ii.append(row)
  log("content shift done")
  print("\n(ii) Content shift: one-step reconstruction MSE and a cross-q probe vs t:")
  print(common.markdown_table(["t", "recon MSE plain", "probe plain", "recon MSE edge",
                               "probe edge", "MSE(x0_hat edge - plain)"], rows_ii), flush=True)
  # (iii) variants and the GATE aggregator at t
  variants = {"plain": (False, 0), "edge-conditioned": (True, 0), "second seed": (False, 1)}
  vx = {}
  for name, (use_edges, seed) in variants.items():
    a, _ = feats(lab_img, args.t, use_edges, seed)
    b, _ = feats(test_img, args.t, use_edges, seed)
    vx[name] = (np.concatenate([a[k] for k in VARIANT_IDS], -1),
                np.concatenate([b[k] for k in VARIANT_IDS], -1))
  rows_iii = [[name, f"{head_miou(a[..., None, :], lab_y, b[..., None, :], test_y, False):.3f}"]
              for name, (a, b) in vx.items()]
  stack = lambda i: np.stack([vx[n][i] for n in variants], axis=-2)
  rows_iii.append(["GATE aggregator over the 3",
                   f"{head_miou(stack(0), lab_y, stack(1), test_y, True):.3f}"])
  log("variants done")
  print(f"\n(iii) Pixel-classifier ensemble (3 members, majority vote), t = {args.t}:")
  print(common.markdown_table(["features", "mIoU"], rows_iii))
  plot(args.workdir, test_img[:4], test_y[:4], recon, rows_i)
  figure = os.path.join(args.workdir, "diffusion_demo.png")
  print(f"\ntotal {time.time() - start:.0f} s; figure {figure}")


def plot(workdir, images, masks, recon, rows_i):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  ts = sorted({t for t, _ in recon})
  fig, axes = plt.subplots(4, 2 + 2 * len(ts), figsize=(2 * (2 + 2 * len(ts)), 8.5))
  show = lambda x: np.clip((x + 1) / 2, 0, 1)
  for r in range(4):
    axes[r, 0].imshow(images[r])
    axes[r, 1].imshow(masks[r], vmin=0, vmax=3, cmap="tab10")
    for j, t in enumerate(ts):
      axes[r, 2 + 2 * j].imshow(show(recon[(t, False)][r]))
      axes[r, 3 + 2 * j].imshow(show(recon[(t, True)][r]))
      if r == 0:
        axes[r, 2 + 2 * j].set_title(f"t={t} plain", fontsize=8)
        axes[r, 3 + 2 * j].set_title(f"t={t} edges", fontsize=8)
  axes[0, 0].set_title("input", fontsize=8)
  axes[0, 1].set_title("mask", fontsize=8)
  for a in axes.ravel():
    a.set_axis_off()
  fig.suptitle("One-step reconstructions x0_hat vs t, without and with the edge channel")
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "diffusion_demo.png"), dpi=80)


if __name__ == "__main__":
  main()

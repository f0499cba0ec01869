"""Pyramid texture filtering (Zhang, Jiang, Guo, Li, Zhang; SIGGRAPH 2023), in JAX under jit.

Official code: RewindL/pyramid_texture_filtering (MATLAB). Algorithm (paper Sec. 3-4):

  G, L = pyramid(I)            G_0 = I, G_{l+1} = resize(blur(G_l), floor(0.8 size));
                               L_l = G_l - blur(resize(G_{l+1}, size(G_l))); blur = 5x5 Gaussian,
                               sigma 1, symmetric padding; resize = bilinear, anti-aliased when
                               shrinking, half-pixel centres (MATLAB imresize).
  R = G_{N-1}
  for l = N-2 .. 0:            sigma_l = sigma_s 0.8^l,
    R_hat = JBF(resize(R, size(G_l)), guide G_l, w1)     pyramid-guided joint bilateral upsampling
    R_out = JBF(R_hat + L_l, guide R_hat, w2)            the Laplacian step (restores structure edges)
    R     = JBF(R_out, guide R_out, w2)                  refinement
  JBF: spatial Gaussian sigma_l over a (2w+1)^2 window clipped at the borders, range weight
  exp(-||guide(q) - guide(p)||^2 / (2 sigma_r^2)) over all channels.

Window half-sizes: the official code uses w1 = w2 = ceil(2 sigma_l + 1) (`w1_factor=2.0`, default);
the paper's smaller upsampling window w1 = ceil(0.5 sigma_l + 1) is `w1_factor=0.5`. The pyramid stops
early (fewer than `levels`) when a level would be smaller than 2 pixels.

Modes (CLI): smoothing (R), detail (I + 2 (I - R), clipped), abstraction (R quantised to 8 levels and
darkened along its edges), halftone (inverse halftoning: R; sigma_r defaults to 0.09 for this mode).

    python -m ml_pipelines.jobs.texture_filter IN.png OUT.png --sigma_s 5 --sigma_r 0.05 --levels 11
    (8- and 16-bit input; OUT keeps the input's bit depth and its alpha channel, unfiltered)
    python -m ml_pipelines.jobs.texture_filter --demo DIR      # scikit-image photographs, before/after
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

SCALE = 0.8
MODES = ("smoothing", "detail", "abstraction", "halftone")
DETAIL_GAIN = 2.0


def level_sizes(h: int, w: int, levels: int, scale: float = SCALE) -> list[tuple[int, int]]:
  """Sizes of the Gaussian pyramid: at most `levels`, none smaller than 2 pixels a side."""
  sizes = [(h, w)]
  while len(sizes) < levels:
    nh, nw = math.floor(sizes[-1][0] * scale), math.floor(sizes[-1][1] * scale)
    if min(nh, nw) < 2:
      break
    sizes.append((nh, nw))
  return sizes


def _gauss1d(size: int, sigma: float) -> np.ndarray:
  r = size // 2
  g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
  return g / g.sum()


def blur(x: jax.Array) -> jax.Array:
  """5x5 Gaussian, sigma 1, symmetric padding; separable (HxWxC)."""
  k = jnp.asarray(_gauss1d(5, 1.0), x.dtype)
  p = jnp.pad(x, ((2, 2), (0, 0), (0, 0)), mode="symmetric")
  x = sum(k[i] * p[i:i + x.shape[0]] for i in range(5))
  p = jnp.pad(x, ((0, 0), (2, 2), (0, 0)), mode="symmetric")
  return sum(k[i] * p[:, i:i + x.shape[1]] for i in range(5))


def resize(x: jax.Array, h: int, w: int) -> jax.Array:
  """Bilinear resize, anti-aliased when shrinking (MATLAB imresize 'bilinear')."""
  return jax.image.resize(x, (h, w, x.shape[-1]), method="linear", antialias=True)


def pyramid(img: jax.Array, levels: int, scale: float = SCALE):
  """Gaussian levels G_0..G_{N-1} and Laplacian levels L_0..L_{N-2}."""
  sizes = level_sizes(img.shape[0], img.shape[1], levels, scale)
  gs, ls = [img], []
  for h, w in sizes[1:]:
    g = gs[-1]
    down = resize(blur(g), h, w)
    ls.append(g - blur(resize(down, g.shape[0], g.shape[1])))
    gs.append(down)
  return gs, ls


def joint_bilateral(a: jax.Array, guide: jax.Array, w: int, sigma_s: float,
                    sigma_r: float) -> jax.Array:
  """Joint bilateral filter of `a` guided by `guide` (HxWxC each), window (2w+1)^2 clipped at the
  borders. A scan over window offsets keeps memory at a few images whatever the window. Channels are
  processed as separate HxW planes: with the 3 colour channels innermost, XLA:CPU vectorised badly
  (a 1-megapixel filter took 3-4x longer)."""
  h, wd, c = a.shape
  pad = ((w, w), (w, w))
  pa = [jnp.pad(a[..., i], pad) for i in range(c)]
  pg = [jnp.pad(guide[..., i], pad) for i in range(c)]
  g0 = [guide[..., i] for i in range(c)]
  pm = jnp.pad(jnp.ones((h, wd), a.dtype), pad)
  offs = np.stack(np.meshgrid(np.arange(2 * w + 1), np.arange(2 * w + 1), indexing="ij"), -1)
  offs = offs.reshape(-1, 2)
  spatial = np.exp(-((offs - w) ** 2).sum(-1) / (2 * sigma_s ** 2))
  inv = -1.0 / (2 * sigma_r ** 2)

  def body(carry, xs):
    num, den = carry
    (dy, dx), s = xs
    sl = lambda t: jax.lax.dynamic_slice(t, (dy, dx), (h, wd))
    f = s * sl(pm) * jnp.exp(inv * sum((sl(pg[i]) - g0[i]) ** 2 for i in range(c)))
    return (tuple(num[i] + f * sl(pa[i]) for i in range(c)), den + f), None

  init = (tuple(jnp.zeros((h, wd), a.dtype) for _ in range(c)), jnp.zeros((h, wd), a.dtype))
  (num, den), _ = jax.lax.scan(body, init, (jnp.asarray(offs, jnp.int32),
                                            jnp.asarray(spatial, a.dtype)), unroll=4)
  return jnp.stack([n / den for n in num], -1)


def _windows(sigma: float, w1_factor: float) -> tuple[int, int]:
  return math.ceil(w1_factor * sigma + 1), math.ceil(2.0 * sigma + 1)


@functools.partial(jax.jit, static_argnames=("sigma_s", "sigma_r", "levels", "w1_factor",
                                             "return_levels"))
def texture_filter(img: jax.Array, *, sigma_s: float = 5.0, sigma_r: float = 0.05,
                   levels: int = 11, w1_factor: float = 2.0, return_levels: bool = False):
  """Filters an HxW or HxWxC float image in [0, 1]. With `return_levels`, also returns the list of
  intermediate results R_l (coarse to fine) and the Gaussian and Laplacian pyramids."""
  grey = img.ndim == 2
  x = img[..., None] if grey else img
  x = x.astype(jnp.float32)
  gs, ls = pyramid(x, levels)
  r, per_level = gs[-1], []
  for l in range(len(gs) - 2, -1, -1):
    s = sigma_s * SCALE ** l
    w1, w2 = _windows(s, w1_factor)
    r_hat = joint_bilateral(resize(r, *gs[l].shape[:2]), gs[l], w1, s, sigma_r)
    r_out = joint_bilateral(r_hat + ls[l], r_hat, w2, s, sigma_r)
    r = joint_bilateral(r_out, r_out, w2, s, sigma_r)
    per_level.append(r)
  out = r[..., 0] if grey else r
  if return_levels:
    return out, per_level, gs, ls
  return out


def apply_mode(img: np.ndarray, smooth: np.ndarray, mode: str) -> np.ndarray:
  """Turns the filtered image into the output of one application (all in [0, 1])."""
  if mode in ("smoothing", "halftone"):
    out = smooth
  elif mode == "detail":
    out = img + DETAIL_GAIN * (img - smooth)
  elif mode == "abstraction":
    q = np.round(smooth * 7.0) / 7.0
    lum = smooth.mean(-1) if smooth.ndim == 3 else smooth
    gy, gx = np.gradient(lum)
    edge = np.clip(1.0 - 4.0 * np.hypot(gx, gy), 0.0, 1.0)
    out = q * (edge[..., None] if q.ndim == 3 else edge)
  else:
    raise ValueError(f"Unknown mode {mode!r}; choose one of {MODES}.")
  return np.clip(out, 0.0, 1.0)


def load_image(path: str) -> tuple[np.ndarray, np.ndarray | None, int]:
  """(image float32 HxW (grey) or HxWx3 in [0, 1], alpha HxW in [0, 1] or None, bit depth 8 or 16).

  16-bit PNGs are read at full precision (png16); other files through Pillow at 8 bits.
  """
  from PIL import Image, UnidentifiedImageError
  from ml_pipelines.jobs import png16
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Input image {path!r} does not exist.")
  if png16.bit_depth(path) == 16:
    raw, bits = png16.read(path).astype(np.float32) / 65535.0, 16
  else:
    try:
      with Image.open(path) as im:
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "F"):
          raise ValueError(f"Cannot read {path!r}: {im.mode} images are read only as 16-bit PNG.")
        alpha = im.mode in ("LA", "RGBA", "PA") or "transparency" in im.info
        grey = im.mode in ("1", "L", "LA")
        mode = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
        raw, bits = np.asarray(im.convert(mode), np.float32) / 255.0, 8
    except (UnidentifiedImageError, OSError) as e:
      raise ValueError(f"Cannot read {path!r} as an image ({e}).") from e
  if raw.ndim == 3 and raw.shape[-1] in (2, 4):
    return raw[..., :-1].squeeze(-1) if raw.shape[-1] == 2 else raw[..., :3], raw[..., -1], bits
  return raw, None, bits


def read_image(path: str) -> np.ndarray:
  """PNG/JPEG/... -> float32 HxW (grey) or HxWx3 in [0, 1] (alpha and bit depth: `load_image`)."""
  return load_image(path)[0]


def write_image(path: str, img: np.ndarray, alpha: np.ndarray | None = None,
                bits: int = 8) -> None:
  """Writes `img` in [0, 1] (and `alpha` as its last channel) at `bits` (16: PNG only)."""
  from PIL import Image
  from ml_pipelines.jobs import png16
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  img = np.clip(img, 0, 1)
  if alpha is not None:
    img = np.concatenate([img.reshape(*img.shape[:2], -1), np.clip(alpha, 0, 1)[..., None]], -1)
  if bits == 16:
    png16.write(path, np.round(img * 65535).astype(np.uint16))
  else:
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)


def check_params(sigma_s: float, sigma_r: float, levels: int, mode: str) -> None:
  if not (sigma_s > 0 and math.isfinite(sigma_s)):
    raise ValueError(f"--sigma_s must be a positive number, got {sigma_s}.")
  if not (sigma_r > 0 and math.isfinite(sigma_r)):
    raise ValueError(f"--sigma_r must be a positive number, got {sigma_r}.")
  if not 1 <= levels <= 11:
    raise ValueError(f"--levels must be between 1 and 11, got {levels}.")
  if mode not in MODES:
    raise ValueError(f"--mode must be one of {MODES}, got {mode!r}.")


def run(inp: str, out: str, sigma_s: float = 5.0, sigma_r: float | None = None,
        levels: int = 11, mode: str = "smoothing") -> np.ndarray:
  """Reads `inp`, filters, applies `mode`, writes `out`; returns the written image."""
  if sigma_r is None:
    sigma_r = 0.09 if mode == "halftone" else 0.05
  check_params(sigma_s, sigma_r, levels, mode)
  img, alpha, bits = load_image(inp)
  smooth = np.asarray(texture_filter(jnp.asarray(img), sigma_s=float(sigma_s),
                                     sigma_r=float(sigma_r), levels=int(levels)))
  result = apply_mode(img, smooth, mode)
  if bits == 16 and not out.lower().endswith(".png"):
    print(f"note: {out} is written with 8 bits per sample (16 bits need a .png output).",
          file=sys.stderr)
    bits = 8
  if alpha is not None and os.path.splitext(out)[1].lower() in (".jpg", ".jpeg"):
    print(f"note: {out} cannot hold the input's alpha channel; it is dropped.", file=sys.stderr)
    alpha = None
  write_image(out, result, alpha, bits)  # same bit depth as the input; alpha kept as it was
  return result


def demo(outdir: str, max_side: int = 256) -> list[str]:
  """Filters scikit-image's bundled photographs and writes <name>_before.png / <name>_after.png."""
  from skimage import data as skdata
  from skimage.transform import resize as skresize
  written = []
  for name in ("astronaut", "coffee", "chelsea", "camera"):
    img = getattr(skdata, name)().astype(np.float32) / 255.0
    s = min(1.0, max_side / max(img.shape[:2]))
    if s < 1.0:
      img = skresize(img, (round(img.shape[0] * s), round(img.shape[1] * s)),
                     anti_aliasing=True).astype(np.float32)
    out = np.asarray(texture_filter(jnp.asarray(img)))
    for tag, im in (("before", img), ("after", out)):
      path = os.path.join(outdir, f"{name}_{tag}.png")
      write_image(path, im)
      written.append(path)
  return written


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m ml_pipelines.jobs.texture_filter",
                              description="Pyramid texture filtering (SIGGRAPH 2023).")
  p.add_argument("input", nargs="?")
  p.add_argument("output", nargs="?")
  p.add_argument("--sigma_s", type=float, default=5.0)
  p.add_argument("--sigma_r", type=float, default=None, help="0.05 (0.09 for --mode halftone)")
  p.add_argument("--levels", type=int, default=11)
  p.add_argument("--mode", default="smoothing", choices=MODES)
  p.add_argument("--demo", metavar="DIR", help="filter scikit-image photographs into DIR")
  a = p.parse_args(argv)
  try:
    if a.demo:
      for path in demo(a.demo):
        print(path)
      return 0
    if not (a.input and a.output):
      p.error("give IN and OUT image paths (or --demo DIR)")
    run(a.input, a.output, a.sigma_s, a.sigma_r, a.levels, a.mode)
    print(a.output)
    return 0
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())

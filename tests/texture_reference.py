"""Plain NumPy reference of pyramid texture filtering (Zhang et al., SIGGRAPH 2023), written from the
paper's algorithm and the official MATLAB structure (RewindL/pyramid_texture_filtering), used by
tests/test_texture_filter.py and benchmarks/texture_filter.py.

Images are float64 HxWxC. Everything is loops over pixels or window offsets; nothing is shared with
ml_pipelines/jobs/texture_filter.py.
"""
from __future__ import annotations

import math

import numpy as np


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] bilinear (triangle) weights, half-pixel centres, the triangle widened by
  n_in/n_out when shrinking (anti-aliasing, as MATLAB imresize), renormalised inside the image."""
  scale = n_out / n_in
  k = min(scale, 1.0)
  m = np.zeros((n_out, n_in))
  for i in range(n_out):
    u = (i + 0.5) / scale - 0.5
    for j in range(n_in):
      m[i, j] = max(0.0, 1.0 - abs((j - u) * k))
    m[i] /= m[i].sum()
  return m


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
  rows, cols = resize_weights(img.shape[0], h), resize_weights(img.shape[1], w)
  return np.einsum("ij,jkc,lk->ilc", rows, img, cols)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
  r = size // 2
  y, x = np.mgrid[-r:r + 1, -r:r + 1]
  g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
  return g / g.sum()


def blur5(img: np.ndarray) -> np.ndarray:
  """5x5 Gaussian (sigma 1) with symmetric (edge-repeating) padding, by a loop over taps."""
  k = gaussian_kernel(5, 1.0)
  p = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="symmetric")
  h, w = img.shape[:2]
  out = np.zeros_like(img)
  for dy in range(5):
    for dx in range(5):
      out += k[dy, dx] * p[dy:dy + h, dx:dx + w]
  return out


def num_levels(h: int, w: int, levels: int, scale: float = 0.8) -> int:
  n = 1
  while n < levels and min(math.floor(h * scale), math.floor(w * scale)) >= 2:
    h, w = math.floor(h * scale), math.floor(w * scale)
    n += 1
  return n


def pyramid(img, levels=11, scale=0.8):
  n = num_levels(img.shape[0], img.shape[1], levels, scale)
  gs, ls = [img], []
  for _ in range(n - 1):
    g = gs[-1]
    down = resize(blur5(g), math.floor(g.shape[0] * scale), math.floor(g.shape[1] * scale))
    ls.append(g - blur5(resize(down, g.shape[0], g.shape[1])))
    gs.append(down)
  return gs, ls


def bilateral_pixels(a, guide, w, sigma_s, sigma_r):
  """Joint bilateral filter pixel by pixel, window clipped at the borders (the MATLAB loop)."""
  gs = gaussian_kernel(2 * w + 1, sigma_s)
  h, wd = a.shape[:2]
  out = np.zeros_like(a)
  for i in range(h):
    for j in range(wd):
      y0, y1, x0, x1 = max(i - w, 0), min(i + w, h - 1), max(j - w, 0), min(j + w, wd - 1)
      pg = guide[y0:y1 + 1, x0:x1 + 1]
      d2 = np.sum((pg - guide[i, j]) ** 2, axis=-1)
      f = np.exp(-d2 / (2 * sigma_r ** 2)) * gs[y0 - i + w:y1 - i + w + 1, x0 - j + w:x1 - j + w + 1]
      out[i, j] = np.sum(a[y0:y1 + 1, x0:x1 + 1] * f[..., None], axis=(0, 1)) / f.sum()
  return out


def bilateral(a, guide, w, sigma_s, sigma_r):
  """The same filter by a loop over window offsets (vectorised over pixels; for large images)."""
  gs = gaussian_kernel(2 * w + 1, sigma_s)
  h, wd = a.shape[:2]
  pa = np.pad(a, ((w, w), (w, w), (0, 0)))
  pg = np.pad(guide, ((w, w), (w, w), (0, 0)))
  pm = np.pad(np.ones((h, wd)), w)
  num, den = np.zeros_like(a), np.zeros((h, wd))
  for dy in range(2 * w + 1):
    for dx in range(2 * w + 1):
      sg = pg[dy:dy + h, dx:dx + wd]
      f = gs[dy, dx] * pm[dy:dy + h, dx:dx + wd] * np.exp(
          -np.sum((sg - guide) ** 2, -1) / (2 * sigma_r ** 2))
      num += f[..., None] * pa[dy:dy + h, dx:dx + wd]
      den += f
  return num / den[..., None]


def texture_filter(img, sigma_s=5.0, sigma_r=0.05, levels=11, scale=0.8, w1_factor=2.0,
                   jbf=bilateral):
  """Returns (result, per-level results R_l from coarse to fine, Gaussian pyramid, Laplacians)."""
  img = np.asarray(img, np.float64)
  if img.ndim == 2:
    img = img[..., None]
  gs, ls = pyramid(img, levels, scale)
  r = gs[-1]
  per_level = []
  for l in range(len(gs) - 2, -1, -1):
    s = sigma_s * scale ** l
    w1, w2 = math.ceil(w1_factor * s + 1), math.ceil(2 * s + 1)
    r_hat = jbf(resize(r, *gs[l].shape[:2]), gs[l], w1, s, sigma_r)
    r_out = jbf(r_hat + ls[l], r_hat, w2, s, sigma_r)
    r = jbf(r_out, r_out, w2, s, sigma_r)
    per_level.append(r)
  return r, per_level, gs, ls

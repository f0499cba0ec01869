"""RandAugment in NumPy, per example (Cubuk et al. 2020, "RandAugment", Sec. 3; timm's
`rand-m9-mstd0.5-inc1` variant used by the DeiT recipe: magnitudes increase with m, each op's sign
is random, the magnitude is drawn from N(m, std)).

Every function takes an HWC uint8 image and the example's `np.random.Generator`, so the augmentation
is a deterministic function of (seed, epoch, index) as the input pipeline requires.
"""
from __future__ import annotations

import numpy as np

_MAX = 10.0


def _blend(a, b, factor):
  """PIL ImageEnhance: b + factor * (a - b), clipped."""
  return np.clip(b.astype(np.float32) + factor * (a.astype(np.float32) - b), 0, 255).astype(np.uint8)


def _gray(img):
  g = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.repeat(g[..., None], img.shape[-1], axis=-1)


def _affine(img, matrix):
  """Output pixel (x, y) takes input pixel matrix @ (x, y, 1) (nearest neighbour, fill 128)."""
  h, w = img.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w]
  src = np.tensordot(matrix, np.stack([xs, ys, np.ones_like(xs)]), axes=1)
  sx, sy = np.rint(src[0]).astype(int), np.rint(src[1]).astype(int)
  ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  out = np.full_like(img, 128)
  out[ok] = img[sy[ok], sx[ok]]
  return out


def identity(img, m):
  return img


def auto_contrast(img, m):
  lo = img.min(axis=(0, 1), keepdims=True).astype(np.float32)
  hi = img.max(axis=(0, 1), keepdims=True).astype(np.float32)
  scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
  return np.clip((img - np.where(hi > lo, lo, 0)) * scale, 0, 255).astype(np.uint8)


def equalize(img, m):
  out = np.empty_like(img)
  for c in range(img.shape[-1]):
    hist = np.bincount(img[..., c].ravel(), minlength=256)
    cdf = np.cumsum(hist)
    nz = cdf[cdf > 0]
    if nz[-1] == nz[0]:
      out[..., c] = img[..., c]
      continue
    lut = np.clip(np.round((cdf - nz[0]) / (nz[-1] - nz[0]) * 255), 0, 255).astype(np.uint8)
    out[..., c] = lut[img[..., c]]
  return out


def solarize(img, m):
  thr = 256 - m / _MAX * 256
  return np.where(img >= thr, 255 - img, img).astype(np.uint8)


def posterize(img, m):
  bits = max(1, int(8 - m / _MAX * 4))
  mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
  return img & mask


def color(img, m, sign=1):
  return _blend(img, _gray(img), 1 + sign * m / _MAX * 0.9)


def contrast(img, m, sign=1):
  mean = _gray(img).mean()
  return _blend(img, np.full(img.shape, mean, np.float32), 1 + sign * m / _MAX * 0.9)


def brightness(img, m, sign=1):
  return _blend(img, np.zeros(img.shape, np.float32), 1 + sign * m / _MAX * 0.9)


def sharpness(img, m, sign=1):
  f = img.astype(np.float32)
  k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
  p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
  blur = sum(k[i, j] * p[i:i + f.shape[0], j:j + f.shape[1]] for i in range(3) for j in range(3))
  blur[0], blur[-1], blur[:, 0], blur[:, -1] = f[0], f[-1], f[:, 0], f[:, -1]
  return _blend(img, blur, 1 + sign * m / _MAX * 0.9)


def rotate(img, m, sign=1):
  h, w = img.shape[:2]
  a = np.deg2rad(sign * m / _MAX * 30)
  cx, cy = (w - 1) / 2, (h - 1) / 2
  c, s = np.cos(a), np.sin(a)
  return _affine(img, np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]]))


def shear_x(img, m, sign=1):
  return _affine(img, np.array([[1, sign * m / _MAX * 0.3, 0], [0, 1, 0]]))


def shear_y(img, m, sign=1):
  return _affine(img, np.array([[1, 0, 0], [sign * m / _MAX * 0.3, 1, 0]]))


def translate_x(img, m, sign=1):
  return _affine(img, np.array([[1, 0, sign * m / _MAX * 0.45 * img.shape[1]], [0, 1, 0]]))


def translate_y(img, m, sign=1):
  return _affine(img, np.array([[1, 0, 0], [0, 1, sign * m / _MAX * 0.45 * img.shape[0]]]))


SIGNED = (color, contrast, brightness, sharpness, rotate, shear_x, shear_y, translate_x, translate_y)
OPS = (auto_contrast, equalize, solarize, posterize) + SIGNED


def rand_augment(img: np.ndarray, rng: np.random.Generator, num_ops: int = 2,
                 magnitude: float = 9.0, magnitude_std: float = 0.5) -> np.ndarray:
  """Applies `num_ops` ops drawn uniformly (each with probability 0.5, as timm) to a uint8 image."""
  for _ in range(num_ops):
    op = OPS[rng.integers(len(OPS))]
    if rng.random() > 0.5:
      continue
    m = float(np.clip(rng.normal(magnitude, magnitude_std) if magnitude_std > 0 else magnitude,
                      0, _MAX))
    img = op(img, m, sign=1 if rng.random() < 0.5 else -1) if op in SIGNED else op(img, m)
  return img

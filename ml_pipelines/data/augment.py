"""Image augmentations in NumPy, per example.

RandAugment (Cubuk et al. 2020, "RandAugment", Sec. 3; timm's `rand-m9-mstd0.5-inc1` variant used by
the DeiT recipe: magnitudes increase with m, each op's sign is random, the magnitude is drawn from
N(m, std)).

Joint transforms for dense and detection tasks: one set of random parameters moves an example's
`image` [H, W, C], its `mask` [H, W] (class ids; 255 = ignore) and its `boxes` [N, 4] together, so
the mask and boxes stay where the image content went. Images are resampled bilinearly (half-pixel
centres, as PIL / OpenCV / `align_corners=False`), masks by nearest neighbour (never blending class
ids), boxes `(x0, y0, x1, y1)` in pixel-edge coordinates (pixel (y, x) covers [x, x+1) x [y, y+1))
exactly. Photometric ops touch the image only. Keys other than these pass through unchanged.

Every random function takes the example's `np.random.Generator`, so the augmentation is a
deterministic function of (seed, step, index) as the input pipeline requires.
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


def _fixmatch_ops():
  """FixMatch's RandAugment pool (`fixmatch_augment_pool`, google-research/fixmatch and
  kekmodel/FixMatch-pytorch `randaugment.py`): name -> fn(img, v, rng) for v in [1, 10)."""
  def enhance(ref):
    return lambda img, v, rng: _blend(img, ref(img), v / _MAX * 0.9 + 0.05)

  def signed(v, rng):
    return -v if rng.random() < 0.5 else v

  def affine(make):
    return lambda img, v, rng: _affine_pil(img, make(img, signed(v, rng)))
  return {
      "auto_contrast": lambda img, v, rng: auto_contrast(img, v),
      "brightness": enhance(lambda img: np.zeros(img.shape, np.float32)),
      "color": enhance(_gray),
      "contrast": enhance(lambda img: np.full(img.shape, _gray(img).mean(), np.float32)),
      "equalize": lambda img, v, rng: equalize(img, v),
      "identity": lambda img, v, rng: img,
      "posterize": lambda img, v, rng: posterize_bits(img, int(v * 4 / _MAX) + 4),
      # rotate(img, m, sign) turns by sign * m / _MAX * 30 degrees: int(3 v) degrees here
      "rotate": lambda img, v, rng: rotate(img, int(v * 30 / _MAX) * _MAX / 30,
                                           sign=signed(1, rng)),
      # sharpness(img, m) enhances by 1 + m / _MAX * 0.9: the factor v / _MAX * 0.9 + 0.05 here
      "sharpness": lambda img, v, rng: sharpness(img, (v / _MAX * 0.9 - 0.95) * _MAX / 0.9),
      "shear_x": affine(lambda img, s: [[1, s * 0.3 / _MAX, 0], [0, 1, 0]]),
      "shear_y": affine(lambda img, s: [[1, 0, 0], [s * 0.3 / _MAX, 1, 0]]),
      "solarize": lambda img, v, rng: np.where(img >= 256 - int(v * 256 / _MAX), 255 - img,
                                               img).astype(np.uint8),
      "translate_x": affine(lambda img, s: [[1, 0, int(s * 0.3 / _MAX * img.shape[1])],
                                            [0, 1, 0]]),
      "translate_y": affine(lambda img, s: [[1, 0, 0],
                                            [0, 1, int(s * 0.3 / _MAX * img.shape[0])]]),
  }


def posterize_bits(img, bits: int):
  """PIL ImageOps.posterize: keep the top `bits` bits."""
  return img & np.uint8((0xFF << (8 - bits)) & 0xFF)


def _affine_pil(img, matrix):
  """PIL `Image.transform(AFFINE, data)`: output (x, y) reads input matrix @ (x, y, 1), nearest,
  fill 0 (FixMatch's ops use PIL's default fill)."""
  h, w = img.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w]
  m = np.asarray(matrix, np.float64)
  src = np.tensordot(m, np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs)]), axes=1)
  sx, sy = np.floor(src[0]).astype(int), np.floor(src[1]).astype(int)
  ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  out = np.zeros_like(img)
  out[ok] = img[sy[ok], sx[ok]]
  return out


FIXMATCH_OPS = _fixmatch_ops()


def cutout(img: np.ndarray, rng: np.random.Generator, size: int, fill: int = 127) -> np.ndarray:
  """FixMatch's `CutoutAbs`: a `size` x `size` gray square centred at a uniform point, clipped at
  the borders."""
  h, w = img.shape[:2]
  x0 = int(max(0, rng.uniform(0, w) - size / 2))
  y0 = int(max(0, rng.uniform(0, h) - size / 2))
  out = img.copy()
  out[y0:min(h, y0 + size), x0:min(w, x0 + size)] = fill
  return out


def rand_augment_fixmatch(img: np.ndarray, rng: np.random.Generator, num_ops: int = 2,
                          magnitude: int = 10) -> np.ndarray:
  """FixMatch's `RandAugmentMC(n, m)` on a uint8 image: `num_ops` ops drawn with replacement from
  the 14-op pool, each applied with probability 1/2 at a magnitude drawn from [1, m), then Cutout
  of half the image side (Sohn et al. 2020, "FixMatch", Sec. 2.3 and Table 12)."""
  names = list(FIXMATCH_OPS)
  for i in rng.integers(len(names), size=num_ops):
    v = int(rng.integers(1, magnitude))
    if rng.random() < 0.5:
      img = FIXMATCH_OPS[names[i]](img, v, rng)
  return cutout(img, rng, int(min(img.shape[:2]) * 0.5))


# --- joint transforms: image, mask and boxes with the same parameters --------------------------
IGNORE = 255


def hflip(ex: dict) -> dict:
  """Mirror left-right: columns reversed, box x-extents reflected (x -> W - x)."""
  out = dict(ex)
  w = ex["image"].shape[1]
  out["image"] = ex["image"][:, ::-1]
  if "mask" in ex:
    out["mask"] = ex["mask"][:, ::-1]
  if "boxes" in ex:
    b = np.asarray(ex["boxes"], np.float32)
    out["boxes"] = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
  return out


def crop(ex: dict, top: int, left: int, height: int, width: int) -> dict:
  """The window `[top, top+height) x [left, left+width)`; boxes shifted and clipped to it (a box
  outside the window keeps zero area)."""
  out = dict(ex)
  out["image"] = ex["image"][top:top + height, left:left + width]
  if "mask" in ex:
    out["mask"] = ex["mask"][top:top + height, left:left + width]
  if "boxes" in ex:
    b = np.asarray(ex["boxes"], np.float32) - np.array([left, top, left, top], np.float32)
    out["boxes"] = np.clip(b, 0, np.array([width, height, width, height], np.float32))
  return out


def _bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
  def taps(n_in, n_out):
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)
  (y0, y1, wy), (x0, x1, wx) = taps(img.shape[0], height), taps(img.shape[1], width)
  f, extra = img.astype(np.float32), (1,) * (img.ndim - 2)
  wy, wx = wy.reshape(-1, 1, *extra), wx.reshape(1, -1, *extra)
  rows = f[y0] * (1 - wy) + f[y1] * wy
  out = rows[:, x0] * (1 - wx) + rows[:, x1] * wx
  if np.issubdtype(img.dtype, np.integer):
    info = np.iinfo(img.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
  return out.astype(img.dtype)


def _nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  ys = np.minimum(((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int),
                  mask.shape[0] - 1)
  xs = np.minimum(((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int),
                  mask.shape[1] - 1)
  return mask[ys[:, None], xs[None, :]]


def resize(ex: dict, height: int, width: int) -> dict:
  """To `height x width`: image bilinear, mask nearest neighbour, boxes scaled."""
  out = dict(ex)
  h, w = ex["image"].shape[:2]
  out["image"] = _bilinear(np.asarray(ex["image"]), height, width)
  if "mask" in ex:
    out["mask"] = _nearest(np.asarray(ex["mask"]), height, width)
  if "boxes" in ex:
    scale = np.array([width / w, height / h, width / w, height / h], np.float32)
    out["boxes"] = np.asarray(ex["boxes"], np.float32) * scale
  return out


def pad(ex: dict, height: int, width: int, fill: float = 0, ignore: int = IGNORE) -> dict:
  """Pads bottom and right up to at least `height x width`: image with `fill`, mask with `ignore`
  (no loss there); boxes do not move."""
  h, w = ex["image"].shape[:2]
  dh, dw = max(height - h, 0), max(width - w, 0)
  out = dict(ex)
  out["image"] = np.pad(ex["image"], ((0, dh), (0, dw)) + ((0, 0),) * (ex["image"].ndim - 2),
                        constant_values=fill)
  if "mask" in ex:
    out["mask"] = np.pad(ex["mask"], ((0, dh), (0, dw)), constant_values=ignore)
  return out


def sample_crop(height: int, width: int, rng: np.random.Generator,
                scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """(top, left, h, w) of an Inception crop (timm RandomResizedCrop): area fraction U(scale),
  log-uniform aspect ratio, 10 tries, then the central square."""
  for _ in range(10):
    area = height * width * rng.uniform(*scale)
    ar = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
    if 0 < cw <= width and 0 < ch <= height:
      return int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1)), ch, cw
  s = min(height, width)
  return (height - s) // 2, (width - s) // 2, s, s


def random_resized_crop(ex: dict, rng: np.random.Generator, size: int | tuple[int, int],
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> dict:
  """An Inception crop of the example, resized to `size`."""
  height, width = (size, size) if np.isscalar(size) else size
  return resize(crop(ex, *sample_crop(*ex["image"].shape[:2], rng, scale, ratio)), height, width)


def random_scale_crop(ex: dict, rng: np.random.Generator, size: int | tuple[int, int],
                      scale=(0.5, 2.0), fill: float = 0, ignore: int = IGNORE) -> dict:
  """Segmentation training crop (mmseg RandomResize + RandomCrop + Pad): rescale by U(scale), pad to
  at least `size` (mask with `ignore`), then a uniformly placed `size` window."""
  height, width = (size, size) if np.isscalar(size) else size
  h, w = ex["image"].shape[:2]
  s = rng.uniform(*scale)
  ex = pad(resize(ex, max(1, int(round(h * s))), max(1, int(round(w * s)))), height, width,
           fill, ignore)
  h, w = ex["image"].shape[:2]
  return crop(ex, int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1)),
              height, width)


def random_hflip(ex: dict, rng: np.random.Generator, p: float = 0.5) -> dict:
  return hflip(ex) if rng.random() < p else ex


def photometric(ex: dict, rng: np.random.Generator, brightness: float = 32,
                contrast=(0.5, 1.5), saturation=(0.5, 1.5)) -> dict:
  """Image-only colour jitter of a uint8 image (mmseg PhotoMetricDistortion without hue): each of
  brightness (add U(-b, b)), contrast (blend with the mean grey, factor U(contrast)) and saturation
  (blend with the greyscale image, factor U(saturation)) with probability 1/2. Mask, boxes kept."""
  img = np.asarray(ex["image"])
  if rng.random() < 0.5:
    img = np.clip(img.astype(np.float32) + rng.uniform(-brightness, brightness), 0, 255
                  ).astype(np.uint8)
  if rng.random() < 0.5:
    img = _blend(img, np.full(img.shape, _gray(img).mean(), np.float32), rng.uniform(*contrast))
  if rng.random() < 0.5:
    img = _blend(img, _gray(img), rng.uniform(*saturation))
  return {**ex, "image": img}


# --- channel-level augmentations of visible-infrared re-ID (normalised float images) ----------
# Random draws map one-to-one onto the Python `random` calls of the reference code:
# `random.uniform(a, b)` -> `rng.uniform(a, b)`, `random.randint(a, b)` -> `rng.integers(a, b + 1)`.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)


def random_erasing(img: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                   area=(0.02, 0.4), min_aspect: float = 0.3, fill=CIFAR_MEAN) -> np.ndarray:
  """Random erasing (Zhong et al., AAAI 2020, arXiv 1708.04896, Alg. 1) as in SGIEL's
  `ChannelRandomErasing` (jiawei151/SGIEL_VIReID `ChannelAug.py`) on an [H, W, C] image: with
  probability `p`, up to 100 attempts of a target area `U(area) * H * W` and an aspect ratio
  `U(min_aspect, 1 / min_aspect)`, h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect));
  the first attempt with h < H and w < W fills a uniformly placed h x w rectangle with `fill`
  (per channel; the code applies it after normalisation, so the values are normalised ones)."""
  if rng.uniform(0, 1) > p:
    return img
  h_img, w_img = img.shape[:2]
  for _ in range(100):
    target = rng.uniform(*area) * h_img * w_img
    aspect = rng.uniform(min_aspect, 1 / min_aspect)
    h, w = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
    if w < w_img and h < h_img:
      y0, x0 = int(rng.integers(0, h_img - h + 1)), int(rng.integers(0, w_img - w + 1))
      out = np.array(img, copy=True)
      out[y0:y0 + h, x0:x0 + w] = np.asarray(fill, img.dtype)[:img.shape[-1]]
      return out
  return img


def channel_exchange(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """SGIEL's `ChannelExchange(gray=2)` (`data_loader.py`): one of the three channels, uniformly,
  copied to all three."""
  c = int(rng.integers(0, 3))
  return np.repeat(img[..., c:c + 1], 3, axis=-1)


def channel_adapt_gray(img: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
  """`ChannelAdapGray` (Ye et al., "Channel Augmented Joint Learning for Visible-Infrared
  Recognition", ICCV 2021; SGIEL's `ChannelAug.py`): uniformly one of four cases: channel R, G or B
  copied to all three, or, with probability `p` within the fourth, the luma
  0.2989 R + 0.587 G + 0.114 B in all three (else unchanged)."""
  c = int(rng.integers(0, 4))
  if c < 3:
    return np.repeat(img[..., c:c + 1], 3, axis=-1)
  if rng.uniform(0, 1) > p:
    return img
  luma = 0.2989 * img[..., 0] + 0.5870 * img[..., 1] + 0.1140 * img[..., 2]
  return np.repeat(luma[..., None], 3, axis=-1).astype(img.dtype)

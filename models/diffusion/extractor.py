"""The feature-extraction pass of Meng et al. 2024 (github.com/Darkbblue/generic-diffusion-feature,
`FeatureExtractor.extract`) and the content-shift variants of the GATE paper (Meng et al. 2024,
"Suppress Content Shift", github.com/Darkbblue/diffusion-content-shift), as one pure function:

  image in [-1, 1] -> VAE posterior sample z0 = (mu + sigma eps1) * 0.18215
  -> z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps2 at the timestep the official code feeds (t + 1)
  -> [ControlNet variant: noise at `denoising_from` + 1, PNDM steps with ControlNet residuals down
     to t, extraction at t itself]
  -> one UNet forward with the prompt's CLIP states -> the requested taps, float16, NHWC.

Both draws come from `key` (the official code leaves them unseeded); a second noise seed is another
key. The fine-grained-prompt and LoRA variants change only `text` and the UNet's weights.
"""
from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from models.diffusion import schedules

SD_PAD_TOKEN = 49407  # SD-1.5's tokenizer pads with <|endoftext|>


@dataclasses.dataclass(frozen=True)
class Spec:
  """What one extraction computes (static under jit)."""
  taps: tuple[str, ...]
  attention: tuple[str, ...] = ()
  t: int = 50
  denoising_from: int = 0       # > t: the official `--denoising_from` (ControlNet variant: 60)
  control_scale: float = 1.0
  out_dtype: str = "float16"


def extract(unet, vae, controlnet, images, text, key, cond, spec: Spec, abar=None):
  """({tap id: [B, ...] out_dtype}, eps, z_t) of a batch; `controlnet`/`cond` may be None."""
  abar = schedules.alphas_cumprod() if abar is None else abar
  b = images.shape[0]
  text = jnp.broadcast_to(text, (b,) + text.shape[1:])
  k_latent, k_noise = jax.random.split(key)
  z0 = vae.sample_latent(images, k_latent)
  noise = jax.random.normal(k_noise, z0.shape, z0.dtype)

  def residuals(x, t):
    if controlnet is None:
      return None, None
    return controlnet(x, t, text, cond, scale=spec.control_scale)

  if spec.denoising_from:
    steps, noise_t, t_feed, n = schedules.denoising_plan(spec.t, spec.denoising_from)
    z = schedules.add_noise(z0, noise, noise_t, abar)

    def eps_fn(x, t):
      down, mid = residuals(x, t)
      return unet(x, t, text, down_residuals=down, mid_residual=mid)[0]
    z = schedules.pndm_denoise(eps_fn, z, steps, n, abar)
  else:
    t_feed = schedules.extraction_timestep(spec.t)
    z = schedules.add_noise(z0, noise, t_feed, abar)
  down, mid = residuals(z, t_feed)
  eps, taps = unet(z, t_feed, text, taps=frozenset(spec.taps), attention=spec.attention,
                   down_residuals=down, mid_residual=mid)
  return {k: v.astype(spec.out_dtype) for k, v in taps.items()}, eps, z


def prompt_tokens(prompt: str, context_length: int = 77) -> np.ndarray:
  """CLIP BPE ids [1, 77] padded with <|endoftext|> as SD-1.5's tokenizer (not with 0 as CLIP)."""
  from models.clip_tokenizer import tokenize
  tokens = tokenize([prompt], context_length)
  end = int(np.argmax(tokens[0] == SD_PAD_TOKEN))
  tokens[0, end + 1:] = SD_PAD_TOKEN
  return tokens


def resize(image_uint8: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] at size x size: a wrong size is resized whole (PIL bicubic, as the official
  `x.resize((img_size, img_size))`) with a warning, never cropped."""
  from PIL import Image
  if image_uint8.shape[:2] == (size, size):
    return image_uint8
  warnings.warn(f"image of size {image_uint8.shape[:2]} resized to {size}x{size} "
                "(the whole image, not cropped)", stacklevel=2)
  return np.asarray(Image.fromarray(image_uint8).resize((size, size), Image.BICUBIC))


def to_unit_range(images_uint8: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] (diffusers' `VaeImageProcessor.preprocess`)."""
  return images_uint8.astype(np.float32) / 127.5 - 1.0


def canny(images_uint8: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
  """The ControlNet-canny condition: `cv2.Canny(img, 100, 200)` of each RGB image (as the official
  code), as 3 equal channels in [0, 1] (diffusers' `VaeImageProcessor(do_normalize=False)`)."""
  e = np.stack([canny_edges(im, low, high) for im in images_uint8]).astype(np.float32)[..., None]
  return np.repeat(e, 3, axis=-1)


def canny_edges(image: np.ndarray, low: int, high: int) -> np.ndarray:
  """OpenCV's `Canny(image, low, high)` (L1 gradient, aperture 3) in NumPy, bit-exact: Sobel
  derivatives with replicated borders per channel, keeping the channel of largest |dx| + |dy| (the
  first on ties); non-maximum suppression along the gradient direction quantised with
  tan(22.5 deg) = 13573 / 2^15 (strict on one side, as OpenCV), zero magnitude outside the image;
  hysteresis: a candidate (magnitude > low) is an edge when its 8-connected candidate component
  holds a pixel with magnitude > high. Returns bool [H, W]."""
  from scipy import ndimage
  img = np.asarray(image)
  img = img[..., None] if img.ndim == 2 else img
  p = np.pad(img.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="edge")
  dx = (p[:-2, 2:] - p[:-2, :-2]) + 2 * (p[1:-1, 2:] - p[1:-1, :-2]) + (p[2:, 2:] - p[2:, :-2])
  dy = (p[2:, :-2] - p[:-2, :-2]) + 2 * (p[2:, 1:-1] - p[:-2, 1:-1]) + (p[2:, 2:] - p[:-2, 2:])
  best = np.argmax(np.abs(dx) + np.abs(dy), axis=-1)[..., None]
  dx, dy = (np.take_along_axis(a, best, -1)[..., 0].astype(np.int64) for a in (dx, dy))
  mag = np.abs(dx) + np.abs(dy)
  h, w = mag.shape
  padded = np.pad(mag, 1)
  at = lambda oy, ox: padded[1 + oy:1 + oy + h, 1 + ox:1 + ox + w]
  tg22x = np.abs(dx) * 13573
  y = np.abs(dy) << 15
  horizontal, vertical = y < tg22x, y > tg22x + (np.abs(dx) << 16)
  s = np.where((dx ^ dy) < 0, -1, 1)
  diagonal = np.where(s < 0, (mag > at(-1, 1)) & (mag > at(1, -1)),
                      (mag > at(-1, -1)) & (mag > at(1, 1)))
  peak = np.where(horizontal, (mag > at(0, -1)) & (mag >= at(0, 1)),
                  np.where(vertical, (mag > at(-1, 0)) & (mag >= at(1, 0)), diagonal))
  candidate = peak & (mag > low)
  components, n = ndimage.label(candidate, structure=np.ones((3, 3)))
  keep = np.zeros(n + 1, bool)
  keep[components[candidate & (mag > high)]] = True
  keep[0] = False
  return keep[components]

"""Noise schedules of Stable Diffusion 1.5 and diffusers' timestep mapping (PNDM / DDIM / DDPM).

- Scaled-linear betas: beta_i = linspace(sqrt(0.00085), sqrt(0.012), 1000)_i^2,
  abar_t = prod(1 - beta) (float32 as diffusers), forward noising
  z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (DDPM Eq. 4).
- `timesteps`: diffusers' "leading" spacing with `steps_offset=1` (SD-1.5's `scheduler/` config);
  PNDM with `skip_prk_steps` repeats the second-to-last step: 1000 steps are
  [1000, 999, 999, ..., 1].
- `img2img_timesteps`: `StableDiffusionImg2ImgPipeline.get_timesteps(n, strength)`, the start index
  n - int(n * strength); the official extractor of Meng et al. 2024 uses n = 1000, strength
  t/1000, so "t = 50" feeds timestep 51.
- `denoising_plan`: the official `denoising_from` path (content-shift ControlNet variant): noise at
  `from`, PNDM steps down to t, extraction at t itself.
- `pndm_denoise`: PLMS steps (PNDM, Liu et al. 2022, Eq. 9 and the linear multistep of Sec. 3.3) as
  diffusers `PNDMScheduler.step_plms`, including its first-step average.
- `ddim_step`: deterministic DDIM (Song et al. 2021, Eq. 12 with eta = 0).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

TRAIN_STEPS = 1000


def alphas_cumprod(beta_start: float = 0.00085, beta_end: float = 0.012,
                   steps: int = TRAIN_STEPS) -> np.ndarray:
  betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=np.float32) ** 2
  return np.cumprod(1.0 - betas, dtype=np.float32)


def add_noise(z0, noise, t, abar):
  """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps; `t` an int or [B] ints."""
  a = jnp.asarray(abar)[jnp.asarray(t)]
  a = a.reshape(a.shape + (1,) * (z0.ndim - a.ndim))
  return jnp.sqrt(a) * z0 + jnp.sqrt(1.0 - a) * noise


def timesteps(kind: str, n: int, steps_offset: int = 1) -> np.ndarray:
  """The descending timesteps of `set_timesteps(n)` ('pndm' with skip_prk_steps, 'ddim', 'ddpm')."""
  ratio = TRAIN_STEPS // n
  base = (np.arange(0, n) * ratio).round().astype(np.int64) + steps_offset
  if kind == "pndm":
    return np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1].copy()
  if kind in ("ddim", "ddpm"):
    return base[::-1].copy()
  raise ValueError(f"unknown scheduler {kind!r}; valid: pndm, ddim, ddpm")


def img2img_timesteps(kind: str, n: int, t: int) -> np.ndarray:
  """`get_timesteps(n, strength=t/n)` after `set_timesteps(n)` (scheduler order 1)."""
  init = min(int(n * (t / n)), n)
  return timesteps(kind, n)[max(n - init, 0):]


def extraction_timestep(t: int) -> int:
  """The timestep the official extractor feeds the UNet for its argument t (PNDM, 1000 steps)."""
  return int(img2img_timesteps("pndm", TRAIN_STEPS, t)[0])


def denoising_plan(t: int, denoising_from: int) -> tuple[np.ndarray, int, int, int]:
  """(denoising timesteps, noising timestep, extraction timestep, scheduler steps n) of the
  official `denoising_from` path: n = 1000 PNDM steps when `denoising_from - t <= 50`, else 100
  with strength from/100 (as released)."""
  n = TRAIN_STEPS if denoising_from - t <= 50 else 100
  steps = img2img_timesteps("pndm", n, denoising_from)
  steps = steps[steps >= int(round(t))]
  return steps[:-1], int(steps[0]), int(steps[-1]), n


def _prev_sample(x, eps, t, prev_t, abar):
  a_t = abar[t]
  a_prev = abar[prev_t] if prev_t >= 0 else abar[0]  # set_alpha_to_one=False
  denom = a_t * (1 - a_prev) ** 0.5 + (a_t * (1 - a_t) * a_prev) ** 0.5
  return (a_prev / a_t) ** 0.5 * x - (a_prev - a_t) * eps / denom


def pndm_denoise(eps_fn: Callable, x, steps, n: int, abar) -> jnp.ndarray:
  """Runs `x = step(eps_fn(x, t), t, x)` over `steps` with a fresh `PNDMScheduler` (skip_prk_steps)
  whose `set_timesteps(n)` was called: PLMS with diffusers' counter logic."""
  abar = np.asarray(abar, np.float64)
  delta = TRAIN_STEPS // n
  ets, cur = [], None
  for counter, t in enumerate(int(s) for s in steps):
    eps = eps_fn(x, t)
    prev_t = t - delta
    if counter != 1:
      ets = ets[-3:] + [eps]
    else:
      prev_t, t = t, t + delta
    if len(ets) == 1 and counter == 0:
      cur = x
    elif len(ets) == 1 and counter == 1:
      eps, x, cur = (eps + ets[-1]) / 2, cur, None
    elif len(ets) == 2:
      eps = (3 * ets[-1] - ets[-2]) / 2
    elif len(ets) == 3:
      eps = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
    else:
      eps = (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4]) / 24
    x = _prev_sample(x, eps, t, prev_t, abar)
  return x


def ddim_step(x, eps, t, prev_t, abar):
  """x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps, x0_hat = (x - sqrt(1 - abar_t) eps) /
  sqrt(abar_t); abar_{-1} = abar_0 (set_alpha_to_one=False). `t`, `prev_t` may be traced."""
  abar = jnp.asarray(abar)
  a_t = abar[t]
  a_prev = jnp.where(prev_t >= 0, abar[jnp.maximum(prev_t, 0)], abar[0])
  x0 = (x - jnp.sqrt(1 - a_t) * eps) / jnp.sqrt(a_t)
  return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps

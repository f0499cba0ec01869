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

import jax
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
  """PNDM's `_get_prev_sample` (Liu et al. 2022, Eq. 9); abar_{-1} = abar_0
  (set_alpha_to_one=False); `t`, `prev_t` may be traced."""
  a_t = abar[t]
  a_prev = jnp.where(prev_t >= 0, abar[jnp.maximum(prev_t, 0)], abar[0])
  denom = a_t * jnp.sqrt(1 - a_prev) + jnp.sqrt(a_t * (1 - a_t) * a_prev)
  return jnp.sqrt(a_prev / a_t) * x - (a_prev - a_t) * eps / denom


def plms_plan(steps, n: int) -> dict[str, np.ndarray]:
  """diffusers' `PNDMScheduler.step_plms` counter logic, unrolled into per-step constants: the
  step goes from `t_from` to `t_to`, its eps is `coef_eps * eps + coef_ets . ets` over the last four
  pushed eps (oldest first; the second step pushes none and redoes the first step from the saved
  sample with the mean of both eps), `use_saved` / `save` the first step's input sample."""
  delta = TRAIN_STEPS // n
  rows, pushed = [], 0
  for counter, t in enumerate(int(s) for s in steps):
    t_from, t_to, coef_eps, coef = t, t - delta, 0.0, [0.0] * 4
    if counter == 1:
      t_from, t_to, coef_eps, coef[3] = t + delta, t, 0.5, 0.5
    else:
      pushed = min(pushed + 1, 4)
      coef[4 - pushed:] = {1: [1.0], 2: [-1 / 2, 3 / 2], 3: [5 / 12, -16 / 12, 23 / 12],
                           4: [-9 / 24, 37 / 24, -59 / 24, 55 / 24]}[pushed]
    rows.append((t, t_from, t_to, counter != 1, counter == 1, counter == 0, coef_eps, coef))
  names = ("t", "t_from", "t_to", "push", "use_saved", "save", "coef_eps", "coef_ets")
  return {k: np.asarray(v, np.float32 if k.startswith("coef") else None)
          for k, v in zip(names, zip(*rows))}


def pndm_denoise(eps_fn: Callable, x, steps, n: int, abar) -> jnp.ndarray:
  """Runs `x = step(eps_fn(x, t), t, x)` over `steps` with a fresh `PNDMScheduler` (skip_prk_steps)
  whose `set_timesteps(n)` was called: PLMS with diffusers' counter logic (`plms_plan`), as one
  `lax.scan`, so `eps_fn` (a UNet with ControlNet) is traced and compiled once."""
  if len(steps) == 0:
    return x
  abar = jnp.asarray(abar, jnp.float32)
  plan = {k: jnp.asarray(v) for k, v in plms_plan(steps, n).items()}

  def body(carry, row):
    x, saved, ets = carry
    eps = eps_fn(x, row["t"]).astype(x.dtype)
    ets = jnp.where(row["push"], jnp.concatenate([ets[1:], eps[None]]), ets)
    model_out = row["coef_eps"] * eps + jnp.tensordot(row["coef_ets"], ets, axes=1)
    sample = jnp.where(row["use_saved"], saved, x)
    saved = jnp.where(row["save"], x, saved)
    x = _prev_sample(sample, model_out, row["t_from"], row["t_to"], abar).astype(x.dtype)
    return (x, saved, ets), None
  x = jnp.asarray(x)
  (x, _, _), _ = jax.lax.scan(body, (x, x, jnp.zeros((4,) + x.shape, x.dtype)), plan)
  return x


def ddim_step(x, eps, t, prev_t, abar):
  """x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps, x0_hat = (x - sqrt(1 - abar_t) eps) /
  sqrt(abar_t); abar_{-1} = abar_0 (set_alpha_to_one=False). `t`, `prev_t` may be traced."""
  abar = jnp.asarray(abar)
  a_t = abar[t]
  a_prev = jnp.where(prev_t >= 0, abar[jnp.maximum(prev_t, 0)], abar[0])
  x0 = (x - jnp.sqrt(1 - a_t) * eps) / jnp.sqrt(a_t)
  return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps

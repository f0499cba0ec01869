"""Timestep mapping, noise schedule and PNDM denoising against diffusers' schedulers (fixture from
tests/fixtures/diffusion/make_fixtures.py, diffusers 0.42.1)."""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

from models.diffusion import schedules

REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "diffusion", "schedules.npz"))


@pytest.mark.parametrize("kind", ["pndm", "ddim", "ddpm"])
def test_timesteps_and_img2img_start_equal_diffusers(kind):
  np.testing.assert_allclose(schedules.alphas_cumprod(), REF[f"{kind}_alphas_cumprod"],
                             rtol=5e-6)  # float32 products
  for n in (1000, 100, 50):
    np.testing.assert_array_equal(schedules.timesteps(kind, n), REF[f"{kind}_timesteps_{n}"])
  for n, t in ((1000, 50), (1000, 60), (1000, 261), (1000, 999), (100, 300)):
    np.testing.assert_array_equal(schedules.img2img_timesteps(kind, n, t),
                                  REF[f"{kind}_img2img_{n}_{t}"])


def test_extraction_timestep_is_one_past_t():
  assert schedules.extraction_timestep(50) == 51 == REF["pndm_img2img_1000_50"][0]


def test_pndm_denoising_from_60_equals_diffusers():
  steps, noise_t, extract_t, n = schedules.denoising_plan(50, 60)
  np.testing.assert_array_equal(np.append(steps, extract_t), REF["pndm_timesteps"])
  assert (noise_t, extract_t, n) == (61, 50, 1000)
  eps = jnp.asarray(REF["pndm_eps"])  # one per step, steps descending from 61
  x = schedules.pndm_denoise(lambda x, t: eps[steps[0] - t], REF["pndm_x_start"], steps, 1000,
                             schedules.alphas_cumprod())
  np.testing.assert_allclose(x, REF["pndm_x_end"], atol=1e-5)

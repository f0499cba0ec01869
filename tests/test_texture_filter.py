"""Pyramid texture filtering against the plain NumPy reference (tests/texture_reference.py)."""
import numpy as np
import pytest
import jax.numpy as jnp

from ml_pipelines.jobs import texture_filter as tf
from tests import texture_reference as ref


def _texture_image(h=26, w=23, c=3, seed=0):
  """A step edge (left dark, right bright) under fine high-contrast checker texture and noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  base = np.where(xx < w // 2, 0.25, 0.75)
  checker = 0.06 * np.where((yy + xx) % 2 == 0, 1.0, -1.0)
  img = base + checker + 0.01 * rng.standard_normal((h, w))
  img = np.repeat(img[..., None], c, -1) * np.linspace(0.9, 1.1, c)
  return img.astype(np.float32)


def test_resize_and_blur_match_reference():
  x = np.random.default_rng(1).random((13, 11, 2)).astype(np.float32)
  for h, w in [(10, 8), (13, 11), (17, 15)]:  # shrink (anti-aliased), identity, grow
    np.testing.assert_allclose(np.asarray(tf.resize(jnp.asarray(x), h, w)), ref.resize(x, h, w),
                               atol=2e-6)
  np.testing.assert_allclose(np.asarray(tf.blur(jnp.asarray(x))), ref.blur5(x.astype(np.float64)),
                             atol=2e-6)


def test_bilateral_matches_pixel_loop():
  rng = np.random.default_rng(2)
  a, g = rng.random((9, 7, 3)), rng.random((9, 7, 3))
  want = ref.bilateral_pixels(a, g, 3, 1.7, 0.2)
  np.testing.assert_allclose(ref.bilateral(a, g, 3, 1.7, 0.2), want, atol=1e-12)
  got = tf.joint_bilateral(jnp.asarray(a, jnp.float32), jnp.asarray(g, jnp.float32), 3, 1.7, 0.2)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


@pytest.mark.parametrize("c,levels", [(3, 6), (1, 3)])
def test_every_level_and_result_match_reference(c, levels):
  """26x23 (not divisible by 1/0.8 at any level): pyramid, every level's R and the output."""
  img = _texture_image(c=c)
  arg = img[..., 0] if c == 1 else img
  out, per_level, gs, ls = tf.texture_filter(jnp.asarray(arg), sigma_s=3.0, sigma_r=0.1,
                                             levels=levels, return_levels=True)
  want, want_levels, want_gs, want_ls = ref.texture_filter(img, 3.0, 0.1, levels)
  assert [g.shape for g in gs] == [g.shape for g in want_gs]
  assert want_gs[-1].shape[:2] == [(16, 14), (7, 6)][c == 3]  # floor(0.8 n) per level
  for a, b in zip(gs + ls, want_gs + want_ls):
    np.testing.assert_allclose(np.asarray(a), b, atol=1e-5)
  assert len(per_level) == len(want_levels) == levels - 1
  for a, b in zip(per_level, want_levels):
    np.testing.assert_allclose(np.asarray(a), b, atol=1e-4)
  np.testing.assert_allclose(np.asarray(out), want[..., 0] if c == 1 else want, atol=1e-4)
  assert out.shape == arg.shape


# The next tests reuse the compiled filter of the reference test (same shape and static arguments).
FILTER = dict(sigma_s=3.0, sigma_r=0.1, levels=6, return_levels=True)


def test_constant_image_unchanged():
  img = np.full((26, 23, 3), 0.37, np.float32)
  out = tf.texture_filter(jnp.asarray(img), **FILTER)[0]
  np.testing.assert_allclose(np.asarray(out), img, atol=1e-6)


def _grad_energy(x):
  return float(np.mean(np.diff(x, axis=0) ** 2) + np.mean(np.diff(x, axis=1) ** 2))


def test_edge_survives_texture_flattened():
  """Smoothing removes most of the checker's gradient energy but keeps the step edge."""
  h, w = 26, 23
  img = _texture_image(h, w, c=3)
  out = np.asarray(tf.texture_filter(jnp.asarray(img), **FILTER)[0])
  inside = np.s_[3:-3, 2:w // 2 - 3]
  assert _grad_energy(out[inside]) < 0.01 * _grad_energy(img[inside])  # texture flattened (measured 4e-4)
  left, right = out[:, : w // 2 - 3].mean(), out[:, w // 2 + 3:].mean()
  assert right - left > 0.4  # the 0.5 step survives
  row = out[h // 2, :, 1]
  assert row[w // 2] - row[w // 2 - 2] > 0.3  # and stays sharp (within two pixels)


def test_cli_modes_and_errors(tmp_path, capsys):
  from PIL import Image
  img = (_texture_image(20, 18) * 255).clip(0, 255).astype(np.uint8)
  src = tmp_path / "in.png"
  Image.fromarray(img).save(src)
  for mode in tf.MODES:
    dst = tmp_path / f"{mode}.png"
    assert tf.main([str(src), str(dst), "--sigma_s", "2", "--sigma_r", "0.05", "--levels", "2",
                    "--mode", mode]) == 0
    assert np.asarray(Image.open(dst)).shape == img.shape
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  assert tf.main([str(bad), str(tmp_path / "o.png")]) == 2
  assert "Cannot read" in capsys.readouterr().err
  assert tf.main([str(tmp_path / "missing.png"), str(tmp_path / "o.png")]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert tf.main([str(src), str(tmp_path / "o.png"), "--sigma_r", "-1"]) == 2
  assert "--sigma_r" in capsys.readouterr().err
  assert tf.main([str(src), str(tmp_path / "o.png"), "--levels", "0"]) == 2


def test_16bit_png_round_trip_keeps_depth_and_alpha(tmp_path):
  from PIL import Image
  from ml_pipelines.jobs import png16
  rng = np.random.default_rng(0)
  # The reader against Pillow (which reads 16-bit grey exactly, and writes it with PNG filters).
  grey = rng.integers(0, 65536, (13, 11)).astype(np.uint16)
  Image.fromarray(grey).save(tmp_path / "grey.png")
  np.testing.assert_array_equal(png16.read(str(tmp_path / "grey.png")), grey)
  # The writer: Pillow reads our 16-bit RGB as its top 8 bits; ours reads it back exactly.
  rgb = rng.integers(0, 65536, (9, 7, 3)).astype(np.uint16)
  png16.write(str(tmp_path / "rgb.png"), rgb)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb >> 8)
  np.testing.assert_array_equal(png16.read(str(tmp_path / "rgb.png")), rgb)

  # A dark 16-bit RGBA image (values 20000..30000, which an 8-bit conversion clipped to white).
  img = (20000 + 10000 * _texture_image(20, 18)).astype(np.uint16)
  alpha = rng.integers(0, 65536, (20, 18)).astype(np.uint16)
  png16.write(str(tmp_path / "in.png"), np.concatenate([img, alpha[..., None]], -1))
  out = tmp_path / "out.png"
  assert tf.main([str(tmp_path / "in.png"), str(out), "--levels", "2", "--sigma_s", "2"]) == 0
  assert png16.bit_depth(str(out)) == 16
  written = png16.read(str(out))
  assert written.shape == (20, 18, 4)
  np.testing.assert_array_equal(written[..., 3], alpha)  # alpha kept, unfiltered
  expected = np.asarray(tf.texture_filter(jnp.asarray(img / 65535.0, jnp.float32), sigma_s=2.0,
                                          sigma_r=0.05, levels=2))
  np.testing.assert_allclose(written[..., :3] / 65535.0, np.clip(expected, 0, 1), atol=2e-5)
  assert 0.25 < written[..., :3].mean() / 65535.0 < 0.5  # not blank

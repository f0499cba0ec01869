"""Joint image / mask / box transforms: the mask and boxes land where the image content landed.

The image's pixels hold their own source coordinates (channel 0: row, channel 1: column) and the
mask holds `row * W + column`, so after any transform each output pixel says where it came from.
"""
import numpy as np
import pytest
from PIL import Image

from ml_pipelines.data import augment

H, W = 12, 16
BOXES = np.array([[3, 2, 9, 7], [0, 0, 4, 3], [12, 8, 16, 12]], np.float32)  # x0, y0, x1, y1


def _example():
  ys, xs = np.mgrid[0:H, 0:W]
  return {"image": np.stack([ys, xs], -1).astype(np.float32),
          "mask": (ys * W + xs).astype(np.int32), "boxes": BOXES.copy(), "label": np.int32(3)}


def _source_of_mask(out):
  """(valid, row, column) of each output pixel's source, read from the nearest-neighbour mask."""
  valid = out["mask"] != augment.IGNORE
  return valid, out["mask"] // W, out["mask"] % W


def _check(out, exact: bool):
  valid, my, mx = _source_of_mask(out)
  img = out["image"]
  tol = 0 if exact else 0.5 + 1e-4  # nearest neighbour of the bilinear sample point
  assert np.abs(img[..., 0][valid] - my[valid]).max() <= tol
  assert np.abs(img[..., 1][valid] - mx[valid]).max() <= tol
  assert out["label"] == 3
  for box, moved in zip(BOXES, out["boxes"]):
    x0, y0, x1, y1 = box
    inside = valid & (mx >= x0) & (mx < x1) & (my >= y0) & (my < y1)
    if not inside.any():  # the box left the image: zero area
      assert (moved[2] - moved[0]) * (moved[3] - moved[1]) <= (0 if exact else 2)
      continue
    rows, cols = np.nonzero(inside)
    bbox = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
    np.testing.assert_allclose(moved, bbox, atol=0 if exact else 1.0)


def test_flip_and_crop_move_mask_and_boxes_exactly():
  ex = _example()
  flipped = augment.hflip(ex)
  assert flipped["image"][0, 0, 1] == W - 1
  _check(flipped, exact=True)
  cropped = augment.crop(ex, 1, 5, 8, 9)  # cuts every box
  _check(cropped, exact=True)
  _check(augment.crop(flipped, 3, 0, 9, 10), exact=True)


@pytest.mark.parametrize("size", [(24, 32), (7, 5), (12, 9)])
def test_resize_image_bilinear_mask_nearest_boxes_scaled(size):
  out = augment.resize(_example(), *size)
  assert out["image"].shape == (*size, 2) and out["mask"].shape == size
  _check(out, exact=False)
  np.testing.assert_allclose(out["boxes"], BOXES * np.array([size[1] / W, size[0] / H] * 2),
                             rtol=1e-6)


def test_bilinear_upscaling_matches_pil():
  img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  ours = augment.resize({"image": img}, 13, 19)["image"]
  pil = np.asarray(Image.fromarray(img).resize((19, 13), Image.BILINEAR))
  assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1


def test_pad_fills_the_mask_with_the_ignore_label():
  out = augment.pad(_example(), 15, 20, fill=-1)
  assert out["image"].shape == (15, 20, 2)
  assert (out["mask"][H:] == 255).all() and (out["mask"][:, W:] == 255).all()
  assert (out["image"][H:] == -1).all()
  np.testing.assert_array_equal(out["mask"][:H, :W], _example()["mask"])
  _check(out, exact=True)


@pytest.mark.parametrize("seed", range(6))
def test_random_transforms_keep_image_mask_and_boxes_aligned(seed):
  rng = np.random.default_rng(seed)
  out = augment.random_resized_crop(_example(), rng, 10, scale=(0.2, 1.0))
  _check(augment.random_hflip(out, rng), exact=False)
  out = augment.random_scale_crop(_example(), rng, (14, 18), scale=(0.5, 2.0))
  assert out["image"].shape == (14, 18, 2)
  _check(augment.random_hflip(out, rng, p=1.0), exact=False)
  again = augment.random_scale_crop(_example(), np.random.default_rng(seed), (14, 18))
  first = augment.random_scale_crop(_example(), np.random.default_rng(seed), (14, 18))
  np.testing.assert_array_equal(again["mask"], first["mask"])  # same generator, same crop


def test_random_scale_crop_pads_small_images_with_ignore():
  out = augment.random_scale_crop(_example(), np.random.default_rng(0), (30, 40), scale=(1, 1))
  valid, _, _ = _source_of_mask(out)
  assert valid.sum() == H * W and (~valid).sum() == 30 * 40 - H * W
  _check(out, exact=True)


def test_photometric_changes_the_image_only():
  ex = _example()
  ex["image"] = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
  changed = 0
  for seed in range(4):
    out = augment.photometric(ex, np.random.default_rng(seed))
    np.testing.assert_array_equal(out["mask"], ex["mask"])
    np.testing.assert_array_equal(out["boxes"], ex["boxes"])
    assert out["image"].dtype == np.uint8
    changed += not np.array_equal(out["image"], ex["image"])
  assert changed >= 2

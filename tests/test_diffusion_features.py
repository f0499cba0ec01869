"""The feature job: batched, sharded extraction of tiny diffusers-layout models to float16
ArrayRecord, equal to one direct `extractor.extract` call per batch; its ControlNet-canny variant
with `denoising_from=60` equal to the official pipeline run in diffusers."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.diffusion import features as features_config
from ml_pipelines.data import records
from ml_pipelines.jobs import diffusion_features
from models.diffusion import extractor
from models.diffusion.weights import load_component

WEIGHTS = os.path.join(os.path.dirname(__file__), "fixtures", "diffusion", "weights")
IDS = ("up-level2-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k")


def test_feature_job_writes_what_extract_computes(tmp_path):
  rng = np.random.default_rng(0)
  images = tmp_path / "images"
  images.mkdir()
  raw = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
  for i, im in enumerate(raw):
    size = 16 if i < 2 else 20
    Image.fromarray(im).resize((size, size)).save(images / f"img{i}.png")
    np.save(images / f"img{i}.npy", np.full((4, 4), i, np.uint8))
  (tmp_path / "set.json").write_text(json.dumps({i: True for i in IDS}))
  config = features_config.get_features_config("horse21_practical")
  config.update(dict(images_dir=str(images), img_size=16, batch_size=2, dtype="float32",
                     activation_set=str(tmp_path / "set.json")))
  unet, vae = load_component(WEIGHTS, "unet"), load_component(WEIGHTS, "vae")
  text = jnp.asarray(rng.normal(size=(1, 5, 8)), jnp.float32)
  with pytest.warns(UserWarning, match=r"resized to 16x16 \(the whole image, not cropped\)"):
    shapes = diffusion_features.run(config, str(tmp_path / "out"), (unet, vae, None, text))
  assert shapes == {IDS[0]: [4, 4, 4], IDS[1]: [8, 8, 4]}  # 16 px -> 8x8 latent (tiny VAE)
  got = _written(tmp_path / "out")
  assert [str(g["name"]) for g in got] == ["img0.png", "img1.png", "img2.png"]
  assert [int(g["label"][0, 0]) for g in got] == [0, 1, 2]
  assert all(g[k].dtype == np.float16 for g in got for k in IDS)
  # the first batch (images 0 and 1) directly, with the key the job folds for it
  batch = extractor.to_unit_range(np.stack([np.asarray(Image.open(images / f"img{i}.png"))
                                            for i in (0, 1)]))
  want, _, _ = jax.jit(lambda b: extractor.extract(
      unet, vae, None, b, text, jax.random.fold_in(jax.random.key(0), 0), None,
      extractor.Spec(taps=IDS)))(jnp.asarray(batch))
  for k in IDS:
    np.testing.assert_allclose(got[1][k].astype(np.float32), np.asarray(want[k][1], np.float32),
                               rtol=2e-3, atol=2e-3)


def _written(out_dir):
  got = [records.decode(r) for r in records.RecordSource(str(out_dir), "train")._source]
  return [records.decode(r) if isinstance(r, bytes) else r for r in got]


def test_controlnet_canny_variant_through_the_job_equals_diffusers(tmp_path):
  """The job with `controlnet_dir` + `denoising_from=60` on the tiny diffusers-layout weights
  against the official pipeline steps run in diffusers (tests/fixtures/diffusion/make_fixtures.py
  `controlnet_job`: OpenCV canny, VAE sample, noise at 61, a fresh PNDM scheduler stepping 61..51
  with ControlNet residuals, the controlled forward at 50, activations by forward hooks; the
  fixture's ControlNet has random, not zero, output convs so its residuals matter), fed the
  Gaussian draws the job makes. This checks the canny condition, the denoising schedule and the
  residual wiring end to end; taps are float16 as stored."""
  ref = np.load(os.path.join(os.path.dirname(WEIGHTS), "controlnet_job.npz"))
  ids = tuple(k[4:] for k in ref.files if k.startswith("tap/"))
  np.testing.assert_array_equal(extractor.canny(ref["raw"]), ref["canny"])  # = cv2.Canny
  images = tmp_path / "images"
  images.mkdir()
  for i, im in enumerate(ref["raw"]):
    Image.fromarray(im).save(images / f"img{i}.png")
  (tmp_path / "set.json").write_text(json.dumps({i: True for i in ids}))
  config = features_config.get_features_config("horse21_practical")
  config.update(dict(images_dir=str(images), img_size=16, batch_size=2, dtype="float32",
                     activation_set=str(tmp_path / "set.json"), denoising_from=60,
                     controlnet_dir=os.path.join(WEIGHTS, "controlnet")))
  models = (load_component(WEIGHTS, "unet"), load_component(WEIGHTS, "vae"),
            load_component(config.controlnet_dir), jnp.asarray(ref["text"]))
  diffusion_features.run(config, str(tmp_path / "out"), models)
  got = _written(tmp_path / "out")
  for k in ids:
    want = ref[f"tap/{k}"]
    np.testing.assert_allclose(np.stack([g[k] for g in got]).astype(np.float32), want,
                               rtol=2e-3, atol=2e-3 * np.abs(want).max(), err_msg=k)

"""Prepared TFDS image-classification datasets read through `tfds.data_source` (no TensorFlow).

Registered: `cifar10` (32x32; train: pad-4 random crop + flip) and `caltech_birds2011` (resized to
`config.image_size`). Normalisation uses the dataset's channel mean/std.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.imagenet import IMAGENET_MEAN, IMAGENET_STD

PREPARE = ("pip install -e '.[prep]' && python -c \"import tensorflow_datasets as tfds; "
           "tfds.builder('{name}', data_dir='{dir}').download_and_prepare()\"")
MEAN_STD = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
            "caltech_birds2011": (IMAGENET_MEAN, IMAGENET_STD)}


def tfds_source(name: str, split: str, data_dir: str | None):
  """`tfds.data_source` with an error that names the directory and the command that prepares it."""
  import tensorflow_datasets as tfds
  data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # noqa: BLE001 -- tfds raises several types for "not prepared"
    raise FileNotFoundError(
        f"TFDS dataset {name!r} (split {split!r}) is not prepared under {data_dir!r} "
        f"({type(e).__name__}). Prepare it with:\n  {PREPARE.format(name=name, dir=data_dir)}"
    ) from e


def _normalise(image: np.ndarray, name: str) -> np.ndarray:
  mean, std = MEAN_STD[name]
  return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


class TfdsFields:
  """Keeps `image` and `label` (as int32) of a TFDS example."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    ex = self.source[i]
    return {"image": np.asarray(ex["image"]), "label": np.int32(ex["label"])}


@data.register("cifar10")
def cifar10(config, split: str) -> data.Dataset:
  source = TfdsFields(tfds_source("cifar10", split, config.get("data_dir")))

  def train(ex, rng):
    img = np.pad(ex["image"], ((4, 4), (4, 4), (0, 0)), mode="reflect")
    y, x = rng.integers(0, 9, size=2)
    img = img[y:y + 32, x:x + 32]
    if rng.random() < 0.5:
      img = img[:, ::-1]
    return {"image": _normalise(img, "cifar10"), "label": ex["label"]}

  def test(ex):
    return {"image": _normalise(ex["image"], "cifar10"), "label": ex["label"]}
  return data.Dataset(source, {"image": ((32, 32, 3), np.float32), "label": ((), np.int32)},
                      preprocess=train, eval_preprocess=test, info={"num_classes": 10})


@data.register("caltech_birds2011")
def caltech_birds2011(config, split: str) -> data.Dataset:
  size = int(config.get("image_size", 224))
  source = TfdsFields(tfds_source("caltech_birds2011", split, config.get("data_dir")))

  def train(ex, rng):
    img = _resize(ex["image"], size)
    if rng.random() < 0.5:
      img = img[:, ::-1]
    return {"image": _normalise(img, "caltech_birds2011"), "label": ex["label"]}

  def test(ex):
    return {"image": _normalise(_resize(ex["image"], size), "caltech_birds2011"),
            "label": ex["label"]}
  return data.Dataset(source, {"image": ((size, size, 3), np.float32), "label": ((), np.int32)},
                      preprocess=train, eval_preprocess=test, info={"num_classes": 200})

"""Semi-supervised image datasets: every training example carries a weak and a strong view.

Weak view: random crop after reflect-padding by 1/8 of the side, and (optionally) a horizontal
flip; strong view: an independent weak view, then FixMatch's RandAugment (2 ops, magnitude 10) and
Cutout (`augment.rand_augment_fixmatch`), as FixMatch / FreeMatch / DSA (`TransformFixMatch`,
Qi2019KB/DSA `datasets/classification/transform.py`). Labeled rows use the weak view. Which rows are
labeled is the `labeled_unlabeled` sampler's business (`samplers.py`); evaluation sees the plain
normalised image.

Registered:
- `cifar10_ssl`, `cifar100_ssl`: TFDS `cifar10` / `cifar100` through `tfds.data_source`, with the
  FixMatch normalisation and `source_index`, the position in the original CIFAR files (TFDS `id`
  "train_NNNNN"), so the official labeled splits (lists of those positions) can be used.
- `digits_ssl`: scikit-learn's digits upsampled to `image_size` (16) in RGB, no flip (digits are
  not mirror-symmetric): the embedded stand-in for the demo and the tests.

Options (config.data): data_dir, image_size (digits), randaugment_ops (2),
randaugment_magnitude (10).
"""
from __future__ import annotations

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import augment
from ml_pipelines.data.imagenet import _digits_rgb
from ml_pipelines.data.tfds_image import TfdsFields, tfds_source

MEAN_STD = {  # FixMatch's (kekmodel/FixMatch-pytorch dataset/cifar.py), as DSA's datasources
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "digits": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def normalise(image: np.ndarray, mean, std) -> np.ndarray:
  return ((image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32))
          / np.asarray(std, np.float32)).astype(np.float32)


def weak_view(image: np.ndarray, rng: np.random.Generator, hflip: bool) -> np.ndarray:
  """RandomHorizontalFlip (if `hflip`), then RandomCrop(size, padding=size/8, reflect)."""
  if hflip and rng.random() < 0.5:
    image = image[:, ::-1]
  h, w = image.shape[:2]
  p = int(h * 0.125)
  padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
  y, x = rng.integers(0, 2 * p + 1, size=2)
  return np.ascontiguousarray(padded[y:y + h, x:x + w])


def weak_strong(mean, std, *, hflip: bool = True, ops: int = 2, magnitude: int = 10):
  """(train preprocess, eval preprocess) of uint8 `image` examples (see the module docstring)."""
  def train(ex, rng):
    img = np.asarray(ex["image"])
    strong = augment.rand_augment_fixmatch(weak_view(img, rng, hflip), rng, ops, magnitude)
    out = {"image": normalise(weak_view(img, rng, hflip), mean, std),
           "image_strong": normalise(strong, mean, std), "label": np.int32(ex["label"])}
    if "source_index" in ex:
      out["source_index"] = np.int32(ex["source_index"])
    return out

  def evaluate(ex):
    return {"image": normalise(np.asarray(ex["image"]), mean, std), "label": np.int32(ex["label"])}
  return train, evaluate


def _spec(size: int, with_source: bool) -> dict:
  spec = {"image": ((size, size, 3), np.float32), "image_strong": ((size, size, 3), np.float32),
          "label": ((), np.int32)}
  if with_source:
    spec["source_index"] = ((), np.int32)
  return spec


def _options(config) -> dict:
  return dict(ops=int(config.get("randaugment_ops", 2)),
              magnitude=int(config.get("randaugment_magnitude", 10)))


class _CifarFields(TfdsFields):
  """`image`, `label` and `source_index` (from TFDS `id` "train_NNNNN") of a TFDS CIFAR split."""

  def __getitem__(self, i):
    ident = self.source[i]["id"]
    ident = ident.decode() if isinstance(ident, bytes) else str(ident)
    return {**super().__getitem__(i), "source_index": np.int32(ident.rsplit("_", 1)[-1])}


def _cifar(name: str, num_classes: int):
  def build(config, split: str) -> data.Dataset:
    source = _CifarFields(tfds_source(name, split, config.get("data_dir")))
    train, evaluate = weak_strong(*MEAN_STD[name], hflip=True, **_options(config))
    return data.Dataset(source, _spec(32, True), preprocess=train, eval_preprocess=evaluate,
                        info={"num_classes": num_classes})
  build.__doc__ = f"TFDS {name} with weak and strong views (see the module docstring)."
  return build


data.register("cifar10_ssl")(_cifar("cifar10", 10))
data.register("cifar100_ssl")(_cifar("cifar100", 100))


@data.register("digits_ssl")
def digits_ssl(config, split: str) -> data.Dataset:
  size = int(config.get("image_size", 16))
  train, evaluate = weak_strong(*MEAN_STD["digits"], hflip=False, **_options(config))
  return data.Dataset(data.ArraySource(_digits_rgb(split, size)), _spec(size, False),
                      preprocess=train, eval_preprocess=evaluate, info={"num_classes": 10})

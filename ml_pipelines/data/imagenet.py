"""ImageNet-style classification data for the backbones.

"imagenet2012": TFDS `imagenet2012` through `tfds.data_source` (random access, no tf.data). The
archives must be downloaded by hand (ILSVRC2012_img_{train,val}.tar) into a manual directory and
prepared once:  tfds build imagenet2012 --manual_dir=DIR --data_dir=DATA_DIR
"digits_rgb": scikit-learn's 8x8 digits (1,797 images, 10 classes, shipped with scikit-learn)
upsampled bilinearly to `image_size` and repeated to RGB: a real, embedded, download-free stand-in
with the same pipeline (random resized crop, flip, RandAugment, mean/std normalisation).

Options (config.data): image_size (224 / 32), data_dir (imagenet2012), randaugment_ops (2),
randaugment_magnitude (9), randaugment_std (0.5), crop_scale_min (0.08).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ml_pipelines import data
from ml_pipelines.data import digits
from ml_pipelines.data.augment import rand_augment

# ImageNet channel mean / std of [0, 1] pixels (torchvision's Normalize): every loader's one copy.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN = np.array(IMAGENET_MEAN, np.float32) * 255  # of [0, 255] pixels
STD = np.array(IMAGENET_STD, np.float32) * 255


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
  return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def random_resized_crop(img, rng, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """Inception crop (timm RandomResizedCrop): area fraction U(scale), log-uniform aspect ratio."""
  h, w = img.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(*scale)
    ar = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
    if 0 < cw <= w and 0 < ch <= h:
      y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return _resize(img[y:y + ch, x:x + cw], size, size)
  s = min(h, w)
  return _resize(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s], size, size)


def center_crop(img, size, crop_pct=0.875):
  h, w = img.shape[:2]
  short = int(size / crop_pct)
  nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
  img = _resize(img, nh, nw)
  y, x = (nh - size) // 2, (nw - size) // 2
  return img[y:y + size, x:x + size]


def make_preprocess(cfg, size: int):
  ops, mag = int(cfg.get("randaugment_ops", 2)), float(cfg.get("randaugment_magnitude", 9.0))
  std, smin = float(cfg.get("randaugment_std", 0.5)), float(cfg.get("crop_scale_min", 0.08))

  def train(ex, rng):
    img = random_resized_crop(np.asarray(ex["image"], np.uint8), rng, size, (smin, 1.0))
    if rng.random() < 0.5:
      img = img[:, ::-1]
    if ops:
      img = rand_augment(np.ascontiguousarray(img), rng, ops, mag, std)
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": np.int32(ex["label"])}

  def evaluate(ex):
    img = center_crop(np.asarray(ex["image"], np.uint8), size)
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": np.int32(ex["label"])}
  return train, evaluate


@data.register("imagenet2012")
def imagenet2012(config, split: str) -> data.Dataset:
  import tensorflow_datasets as tfds
  data_dir = config.get("data_dir") or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
      "~/tensorflow_datasets")
  if not os.path.isdir(os.path.join(data_dir, "imagenet2012")):
    raise FileNotFoundError(
        f"imagenet2012 is not prepared under {os.path.join(data_dir, 'imagenet2012')}. Download "
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into a manual directory MANUAL and "
        f"run: tfds build imagenet2012 --manual_dir=MANUAL --data_dir={data_dir}")
  source = tfds.data_source("imagenet2012", split=split, data_dir=data_dir, download=False)
  size = int(config.get("image_size", 224))
  train, evaluate = make_preprocess(config, size)
  return data.Dataset(source=source,
                      element_spec={"image": ((size, size, 3), np.float32), "label": ((), np.int32)},
                      preprocess=train, eval_preprocess=evaluate, info={"num_classes": 1000})


def _digits_rgb(split: str, size: int) -> dict[str, np.ndarray]:
  images, target = digits.load()
  rows = digits.rows(split)
  imgs = (images[rows] * (255 / 16)).astype(np.uint8)
  up = np.stack([np.asarray(Image.fromarray(i).resize((size, size), Image.BILINEAR)) for i in imgs])
  return {"image": np.repeat(up[..., None], 3, axis=-1), "label": target[rows].astype(np.int32)}


@data.register("digits_rgb")
def digits_rgb(config, split: str) -> data.Dataset:
  size = int(config.get("image_size", 32))
  train, _ = make_preprocess(config, size)

  def evaluate(ex):  # the upsampled image as is: it is already the model's size
    return {"image": ((ex["image"].astype(np.float32) - MEAN) / STD), "label": np.int32(ex["label"])}
  return data.Dataset(source=data.ArraySource(_digits_rgb(split, size)),
                      element_spec={"image": ((size, size, 3), np.float32), "label": ((), np.int32)},
                      preprocess=train, eval_preprocess=evaluate, info={"num_classes": 10})

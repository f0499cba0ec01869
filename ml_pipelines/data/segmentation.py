"""Semantic-segmentation datasets: examples `{"image": [H, W, 3] float32 (ImageNet-normalised),
"label": [H, W] int32 (class ids, 255 = ignore)}` (`mask` while the joint augmentations run; the
eval pipeline uses `mask` for its padding flags).

Registered builders (options in `config.data`):
- `digit_scenes` (embedded): long-tailed synthetic scenes, see `digit_scenes`.
- `ade20k` (SceneParsing-150), `cityscapes` (19 train ids), `coco_stuff164k` (171 classes): the
  official directory layouts as MMSegmentation reads them (`data_dir`), or for ADE20K and
  Cityscapes the prepared TFDS datasets `scene_parse150` / `cityscapes` (`source="tfds"`).

Training pipeline (MMSegmentation v0.24 configs of AUCSeg, `configs/_base_/datasets/*.py`): resize
keeping the aspect ratio to `ratio * scale` with `ratio ~ U(0.5, 2)` (the image fits in the scaled
(long, short) box), a random `crop_size` crop redrawn up to 10 times while one class covers more
than `cat_max_ratio` (0.75) of its labelled pixels, horizontal flip 1/2, photometric distortion,
ImageNet normalisation, padding to `crop_size` (image 0, mask 255). Evaluation has one fixed shape
(the trainer batches fixed shapes): each image is resized, keeping its aspect ratio, to fit
`eval_size` (H, W) and padded there with the ignore label, so mIoU is measured at that resolution
(MMSegmentation resizes predictions back to the original label size instead).

Label checks: a mask value outside [0, num_classes) other than 255, or an image and mask of
different sizes, fail with the file (or index) named.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import augment
from ml_pipelines.data.imagenet import MEAN, STD

IGNORE = 255
NUM_CLASSES = {"ade20k": 150, "cityscapes": 19, "coco_stuff164k": 171}
# Dataset defaults of the AUCSeg configs: (resize scale (long, short), crop, eval fit size).
DEFAULTS = {"ade20k": ((2048, 512), (512, 512), (512, 2048)),
            "cityscapes": ((2048, 1024), (1024, 1024), (1024, 2048)),
            "coco_stuff164k": ((2048, 512), (512, 512), (512, 2048))}
# Cityscapes label ids -> train ids (cityscapesScripts `labels.py`; 255 = not evaluated), for the
# TFDS `cityscapes/semantic_segmentation` labels, which are label ids.
CITYSCAPES_TRAIN_ID = np.full(256, IGNORE, np.uint8)
CITYSCAPES_TRAIN_ID[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = \
    np.arange(19)


def normalise(image: np.ndarray) -> np.ndarray:
  return ((np.asarray(image, np.float32) - MEAN) / STD).astype(np.float32)


def check_example(image: np.ndarray, mask: np.ndarray, num_classes: int, where: str) -> None:
  """The two input errors a segmentation example can carry, each with one clear message."""
  if image.shape[:2] != mask.shape[:2]:
    raise ValueError(f"{where}: image {image.shape[:2]} and mask {mask.shape[:2]} differ in size.")
  bad = (mask >= num_classes) & (mask != IGNORE)
  if bad.any():
    raise ValueError(f"{where}: mask values {sorted(np.unique(mask[bad]).tolist())[:10]} are not "
                     f"class ids 0..{num_classes - 1} nor the ignore label {IGNORE}.")


def rescale_crop(ex: dict, rng: np.random.Generator, scale: tuple[int, int],
                 crop_size: tuple[int, int], ratio=(0.5, 2.0), cat_max_ratio: float = 0.75
                 ) -> dict:
  """mmseg `Resize(img_scale=scale, ratio_range=ratio, keep_ratio=True)` then
  `RandomCrop(crop_size, cat_max_ratio)` then `Pad(crop_size)` (module docstring)."""
  h, w = ex["image"].shape[:2]
  r = rng.uniform(*ratio)
  long_side, short_side = max(scale) * r, min(scale) * r
  f = min(long_side / max(h, w), short_side / min(h, w))
  ex = augment.resize(ex, max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5)))
  ch, cw = crop_size
  h, w = ex["image"].shape[:2]
  top = left = 0
  for _ in range(10):
    top, left = int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))
    m = ex["mask"][top:top + ch, left:left + cw]
    _, counts = np.unique(m[m != IGNORE], return_counts=True)
    if cat_max_ratio >= 1 or (len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio):
      break
  ex = augment.crop(ex, top, left, min(ch, h), min(cw, w))
  return augment.pad(ex, ch, cw, fill=0, ignore=IGNORE)


def fit_and_pad(ex: dict, size: tuple[int, int]) -> dict:
  """Resize keeping the aspect ratio to fit `size` (H, W), pad bottom/right (mask 255)."""
  h, w = ex["image"].shape[:2]
  f = min(size[0] / h, size[1] / w)
  ex = augment.resize(ex, max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5)))
  return augment.pad(ex, *size, fill=0, ignore=IGNORE)


def _builder(source, num_classes: int, config, split: str, name: str, where) -> data.Dataset:
  scale, crop, eval_size = DEFAULTS.get(name, (None, None, None))
  crop = tuple(config.get("crop_size", crop))
  scale = tuple(config.get("scale", scale))
  eval_size = tuple(config.get("eval_size", eval_size))

  def checked(ex):
    image, mask = np.asarray(ex["image"]), np.asarray(ex["mask"])
    check_example(image, mask, num_classes, where(ex))
    return {"image": image, "mask": mask.astype(np.int32)}

  def train(ex, rng):
    ex = rescale_crop(checked(ex), rng, scale, crop)
    ex = augment.photometric(augment.random_hflip(ex, rng), rng)
    return {"image": normalise(ex["image"]), "label": ex["mask"].astype(np.int32)}

  def evaluate(ex):
    ex = fit_and_pad(checked(ex), eval_size)
    return {"image": normalise(ex["image"]), "label": ex["mask"].astype(np.int32)}

  hw = crop if split == config.get("train_split", "train") else eval_size
  spec = {"image": ((*hw, 3), np.float32), "label": (hw, np.int32)}
  return data.Dataset(source, spec, preprocess=train, eval_preprocess=evaluate,
                      info={"num_classes": num_classes, "eval_size": eval_size, "crop_size": crop})


class FileSource:
  """(image path, mask path) pairs read with PIL; `reduce_zero_label` maps 0 -> 255 and c -> c - 1
  (ADE20K, as mmseg); `label_map` maps raw values (a 256-entry table)."""

  def __init__(self, pairs, reduce_zero_label: bool = False, label_map=None):
    self.pairs, self.reduce_zero_label, self.label_map = list(pairs), reduce_zero_label, label_map

  def __len__(self):
    return len(self.pairs)

  def __getitem__(self, i):
    from PIL import Image
    image_path, mask_path = self.pairs[i]
    image = np.asarray(Image.open(image_path).convert("RGB"))
    mask = np.asarray(Image.open(mask_path)).astype(np.int64)
    if self.reduce_zero_label:
      mask = np.where(mask == 0, IGNORE, mask - 1)
    if self.label_map is not None:
      mask = self.label_map[mask]
    return {"image": image, "mask": mask, "file": image_path}


def _pairs(root: str, image_glob: str, to_mask, prepare: str):
  images = sorted(glob.glob(os.path.join(root, image_glob)))
  if not images:
    raise FileNotFoundError(f"No images match {os.path.join(root, image_glob)!r}. {prepare}")
  pairs = []
  for p in images:
    m = to_mask(p)
    if not os.path.exists(m):
      raise FileNotFoundError(f"{p}: its mask {m} is missing.")
    pairs.append((p, m))
  return pairs


def _where(ex):
  return ex.get("file", "example") if isinstance(ex, dict) else "example"


@data.register("ade20k")
def ade20k(config, split: str) -> data.Dataset:
  """ADE20K SceneParsing-150: `ADEChallengeData2016/{images,annotations}/{training,validation}/`
  (`data_dir`, the official release), or TFDS `scene_parse150` (`source="tfds"`, label 0 =
  "other" -> 255, classes 1..150 -> 0..149 as mmseg's `reduce_zero_label`)."""
  if config.get("source", "dir") == "tfds":
    from ml_pipelines.data.tfds_image import tfds_source
    src = _TfdsFields(tfds_source("scene_parse150", split, config.get("data_dir")), "image",
                      "annotation", reduce_zero_label=True)
  else:
    sub = {"train": "training", "validation": "validation", "val": "validation"}[split]
    root = config.data_dir
    src = FileSource(_pairs(
        root, f"images/{sub}/*.jpg",
        lambda p: p.replace(os.sep + "images" + os.sep, os.sep + "annotations" + os.sep)[:-4]
        + ".png", "Unpack ADEChallengeData2016.zip (http://sceneparsing.csail.mit.edu) there."),
        reduce_zero_label=True)
  return _builder(src, 150, config, split, "ade20k", _where)


@data.register("cityscapes")
def cityscapes(config, split: str) -> data.Dataset:
  """Cityscapes fine (19 train ids): `leftImg8bit/{train,val}/<city>/*_leftImg8bit.png` with
  `gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png` (`data_dir`; cityscapesScripts'
  `createTrainIdLabelImgs`), or TFDS `cityscapes/semantic_segmentation` (`source="tfds"`, manual
  download; label ids mapped to train ids)."""
  if config.get("source", "dir") == "tfds":
    from ml_pipelines.data.tfds_image import tfds_source
    src = _TfdsFields(tfds_source("cityscapes/semantic_segmentation", split,
                                  config.get("data_dir")), "image_left", "segmentation_label",
                      label_map=CITYSCAPES_TRAIN_ID)
  else:
    split = {"validation": "val"}.get(split, split)
    src = FileSource(_pairs(
        config.data_dir, f"leftImg8bit/{split}/*/*_leftImg8bit.png",
        lambda p: p.replace("leftImg8bit", "gtFine", 1).replace(
            "_leftImg8bit.png", "_gtFine_labelTrainIds.png"),
        "Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com and run cityscapesScripts' createTrainIdLabelImgs."))
  return _builder(src, 19, config, split, "cityscapes", _where)


@data.register("coco_stuff164k")
def coco_stuff164k(config, split: str) -> data.Dataset:
  """COCO-Stuff 164k (171 classes): `images/{train,val}2017/*.jpg` with
  `annotations/{train,val}2017/*_labelTrainIds.png` (`data_dir`; mmseg's
  `tools/convert_datasets/coco_stuff164k.py` output)."""
  split = {"validation": "val"}.get(split, split)
  src = FileSource(_pairs(
      config.data_dir, f"images/{split}2017/*.jpg",
      lambda p: p.replace(os.sep + "images" + os.sep, os.sep + "annotations" + os.sep)[:-4]
      + "_labelTrainIds.png",
      "Download the COCO 2017 images and stuffthingmaps_trainval2017.zip and run mmseg's "
      "tools/convert_datasets/coco_stuff164k.py."))
  return _builder(src, 171, config, split, "coco_stuff164k", _where)


class _TfdsFields:
  def __init__(self, source, image_key, mask_key, reduce_zero_label=False, label_map=None):
    self.source, self.keys = source, (image_key, mask_key)
    self.reduce_zero_label, self.label_map = reduce_zero_label, label_map

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    ex = self.source[i]
    mask = np.asarray(ex[self.keys[1]]).astype(np.int64)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if self.reduce_zero_label:
      mask = np.where(mask == 0, IGNORE, mask - 1)
    if self.label_map is not None:
      mask = self.label_map[mask]
    return {"image": np.asarray(ex[self.keys[0]]), "mask": mask, "file": f"{i}"}


# --- embedded: long-tailed digit scenes ------------------------------------------------------
def render_scenes(n: int, seed: int, size: int = 48, digit_size: int = 24,
                  zipf: float = 1.0, max_digits: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """`n` scenes: uint8 images [n, size, size, 3] and masks [n, size, size] (0 background, d + 1 on
  the ink pixels of digit d). Each scene holds 1..`max_digits` scikit-learn digits (8x8, upsampled
  to `digit_size`, ink where the value > 1/4) of random colours on a random stripe/noise texture,
  the digit class drawn with probability ~ (d + 1)^-zipf so 7, 8, 9 (classes 8, 9, 10) are rare."""
  from ml_pipelines.data import digits
  glyphs, target = digits.load()
  rng = np.random.default_rng(seed)
  p = (np.arange(10) + 1.0) ** -zipf
  p /= p.sum()
  by_class = [np.flatnonzero(target == d) for d in range(10)]
  yy, xx = np.mgrid[0:size, 0:size]
  images = np.empty((n, size, size, 3), np.uint8)
  masks = np.zeros((n, size, size), np.int32)
  for i in range(n):
    freq, phase = rng.uniform(0.1, 0.6), rng.uniform(0, 2 * np.pi)
    theta = rng.uniform(0, np.pi)
    stripes = 0.5 + 0.5 * np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    base, other = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = base + stripes[..., None] * (other - base) * 0.5 + rng.normal(0, 12, (size, size, 3))
    for _ in range(rng.integers(1, max_digits + 1)):
      d = rng.choice(10, p=p)
      g = glyphs[rng.choice(by_class[d])] / 16.0
      g = np.kron(g, np.ones((digit_size // 8, digit_size // 8)))
      ink = g > 0.25
      y0, x0 = rng.integers(0, size - digit_size + 1, size=2)
      colour = rng.uniform(0, 255, 3)
      region = img[y0:y0 + digit_size, x0:x0 + digit_size]
      region[ink] = colour + rng.normal(0, 8, (ink.sum(), 3))
      masks[i, y0:y0 + digit_size, x0:x0 + digit_size][ink] = d + 1
    images[i] = np.clip(img, 0, 255).astype(np.uint8)
  return images, masks


DIGIT_SCENES_TAIL = (8, 9, 10)  # digits 7, 8, 9


@data.register("digit_scenes")
def digit_scenes(config, split: str) -> data.Dataset:
  """Embedded long-tailed scenes (`render_scenes`; 11 classes, tail `DIGIT_SCENES_TAIL`):
  `num_train` (default 800) / `num_test` (200) scenes of `size` (48); train: flip + normalise."""
  size = int(config.get("size", 48))
  n = int(config.get("num_train", 800) if split == "train" else config.get("num_test", 200))
  images, masks = render_scenes(n, seed={"train": 0, "test": 1}[split], size=size)

  def train(ex, rng):
    ex = augment.random_hflip(ex, rng)
    return {"image": normalise(ex["image"]), "label": np.asarray(ex["mask"], np.int32)}

  def evaluate(ex):
    return {"image": normalise(ex["image"]), "label": np.asarray(ex["mask"], np.int32)}
  spec = {"image": ((size, size, 3), np.float32), "label": ((size, size), np.int32)}
  return data.Dataset(data.ArraySource({"image": images, "mask": masks}), spec,
                      preprocess=train, eval_preprocess=evaluate,
                      info={"num_classes": 11, "tail_classes": DIGIT_SCENES_TAIL,
                            "eval_size": (size, size), "crop_size": (size, size)})

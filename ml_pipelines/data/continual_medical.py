"""Dataset builders of the continual / imbalanced medical-imaging papers (manual directories) and
CIFAR-100 in the pipelines of the ACL code (GiantJun/CL_Pytorch, datasets/*.py).

- `cifar100` (TFDS, 32 px; train: pad-4 random crop + flip) and `cifar100_224` (ACL: train
  RandomCrop(32, pad 4), flip, brightness jitter 63/255, then resize to 224; test: resize);
  normalisation mean (0.5071, 0.4867, 0.4408), std (0.2675, 0.2565, 0.2761).
- `skin8`: ISIC 2019 images and the official list files of CL_Pytorch
  (`datasets/skin8_train_500.txt`, `skin8_test_500.txt`; `relative_path label` per line): `<data_dir>/skin8_<split>_500.txt` and the
  images under `<data_dir>/ISIC2019/`. Resize to `image_size`, flip; mean (0.6030, 0.4888, 0.4627),
  std (0.2599, 0.2408, 0.2442).
- `path16`: `<data_dir>/<subset>/<split>/<class>/*` for the 7 pathology subsets in ACL's order
  (MHIST, breast_cancer, oral_cancer, Patch_Camelyon, TCGA_STD, lung, colon); labels numbered
  subset by subset, classes sorted by name within a subset.
- `image_folder`: `<data_dir>/<split>/<class>/*` (a chest X-ray set, any set sorted into class
  folders), classes sorted by name; ImageNet normalisation unless `mean` / `std` given.
- `isic2018`: ISIC 2018 Task 3 (HAM10000, 7 classes) as the challenge ships it:
  `<data_dir>/ISIC2018_Task3_{Training,Validation,Test}_GroundTruth/..._GroundTruth.csv` (columns
  `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`, one-hot) and `<data_dir>/ISIC2018_Task3_<Split>_Input/
  <image>.jpg`; splits "train", "validation", "test"; label = the column of the row's 1 in that
  order; ImageNet normalisation, resize to `image_size`, flip.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ml_pipelines.data.tfds_image import TfdsFields, tfds_source

CIFAR100_MEAN_STD = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
SKIN8_MEAN_STD = ((0.6030, 0.4888, 0.4627), (0.2599, 0.2408, 0.2442))
PATH16_SUBSETS = ("MHIST", "breast_cancer", "oral_cancer", "Patch_Camelyon", "TCGA_STD", "lung",
                  "colon")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _normalise(image, mean_std):
  mean, std = mean_std
  return ((np.asarray(image, np.float32) / 255.0 - np.asarray(mean, np.float32))
          / np.asarray(std, np.float32)).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _pad_crop_flip(image, rng, pad=4):
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  y, x = rng.integers(0, 2 * pad + 1, size=2)
  out = padded[y:y + h, x:x + w]
  return out[:, ::-1] if rng.random() < 0.5 else out


def _cifar100(config, split, size: int | None, jitter: float):
  source = TfdsFields(tfds_source("cifar100", split, config.get("data_dir")))

  def train(ex, rng):
    img = _pad_crop_flip(ex["image"], rng)
    if jitter:  # torchvision ColorJitter(brightness=b): factor uniform in [1 - b, 1 + b]
      img = np.clip(img.astype(np.float32) * rng.uniform(1 - jitter, 1 + jitter), 0, 255
                    ).astype(np.uint8)
    img = _resize(img, size) if size else img
    return {"image": _normalise(img, CIFAR100_MEAN_STD), "label": ex["label"]}

  def test(ex):
    img = _resize(ex["image"], size) if size else ex["image"]
    return {"image": _normalise(img, CIFAR100_MEAN_STD), "label": ex["label"]}
  s = size or 32
  return data.Dataset(source=source, preprocess=train, eval_preprocess=test,
                      element_spec={"image": ((s, s, 3), np.float32), "label": ((), np.int32)},
                      info={"num_classes": 100})


@data.register("cifar100")
def cifar100(config, split: str) -> data.Dataset:
  return _cifar100(config, split, None, 0.0)


@data.register("cifar100_224")
def cifar100_224(config, split: str) -> data.Dataset:
  return _cifar100(config, split, 224, 63 / 255)


class _Files:
  """Images read from paths on access: {image uint8 [H, W, 3], label}."""

  def __init__(self, paths, labels):
    self.paths, self.labels = list(paths), np.asarray(labels, np.int32)
    self.arrays = {"label": self.labels}  # labels without reading images (samplers, herding)

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    from PIL import Image
    with Image.open(self.paths[i]) as im:
      image = np.asarray(im.convert("RGB"))
    return {"image": image, "label": self.labels[i]}


def _dataset(files: _Files, size: int, mean_std, num_classes: int) -> data.Dataset:
  def train(ex, rng):
    img = _resize(ex["image"], size)
    img = img[:, ::-1] if rng.random() < 0.5 else img
    return {"image": _normalise(img, mean_std), "label": ex["label"]}

  def test(ex):
    return {"image": _normalise(_resize(ex["image"], size), mean_std), "label": ex["label"]}
  return data.Dataset(source=files, preprocess=train, eval_preprocess=test,
                      element_spec={"image": ((size, size, 3), np.float32),
                                    "label": ((), np.int32)},
                      info={"num_classes": num_classes})


def _require_dir(path: str, what: str, layout: str = "ml_pipelines/data/continual_medical.py"
                 ) -> None:
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{what}: directory {path!r} does not exist. Set "
                            f"--config.data.data_dir to the folder holding it (see {layout} for "
                            f"the layout).")


def _class_folders(root: str) -> list[str]:
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def _images(folder: str) -> list[str]:
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_SUFFIXES))


@data.register("image_folder")
def image_folder(config, split: str) -> data.Dataset:
  root = os.path.join(os.path.expanduser(config.get("data_dir") or ""), split)
  _require_dir(root, f"image_folder split {split!r}")
  classes = _class_folders(root)
  paths, labels = [], []
  for c, name in enumerate(classes):
    files = _images(os.path.join(root, name))
    paths += files
    labels += [c] * len(files)
  mean_std = (config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD))
  return _dataset(_Files(paths, labels), int(config.get("image_size", 224)), mean_std,
                  len(classes))


@data.register("path16")
def path16(config, split: str) -> data.Dataset:
  root = os.path.expanduser(config.get("data_dir") or "")
  paths, labels, first = [], [], 0
  for sub in PATH16_SUBSETS:
    folder = os.path.join(root, sub, split)
    _require_dir(folder, f"Path16 subset {sub!r}")
    classes = _class_folders(folder)
    for c, name in enumerate(classes):
      files = _images(os.path.join(folder, name))
      paths += files
      labels += [first + c] * len(files)
    first += len(classes)
  return _dataset(_Files(paths, labels), int(config.get("image_size", 224)),
                  (IMAGENET_MEAN, IMAGENET_STD), first)


@data.register("skin8")
def skin8(config, split: str) -> data.Dataset:
  root = os.path.expanduser(config.get("data_dir") or "")
  listing = os.path.join(root, f"skin8_{split}_500.txt")
  if not os.path.isfile(listing):
    raise FileNotFoundError(
        f"Skin8 list file {listing!r} is missing: copy datasets/skin8_{split}_500.txt of "
        f"https://github.com/GiantJun/CL_Pytorch into {root!r} and the ISIC 2019 training images "
        f"into {os.path.join(root, 'ISIC2019')!r}.")
  paths, labels = [], []
  with open(listing) as f:
    for line in f:
      if line.strip():
        rel, label = line.split()
        paths.append(os.path.join(root, "ISIC2019", rel))
        labels.append(int(label))
  return _dataset(_Files(paths, labels), int(config.get("image_size", 224)), SKIN8_MEAN_STD, 8)


ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC2018_SPLITS = {"train": "Training", "validation": "Validation", "test": "Test"}


def isic2018_files(root: str, split: str) -> _Files:
  """The images and labels of ISIC 2018 Task 3 `split` from its ground-truth CSV."""
  import csv
  if split not in ISIC2018_SPLITS:
    raise ValueError(f"ISIC 2018 split must be one of {sorted(ISIC2018_SPLITS)}, got {split!r}.")
  name = f"ISIC2018_Task3_{ISIC2018_SPLITS[split]}"
  listing = os.path.join(root, f"{name}_GroundTruth", f"{name}_GroundTruth.csv")
  if not os.path.isfile(listing):
    raise FileNotFoundError(
        f"ISIC 2018 ground truth {listing!r} is missing: unzip {name}_GroundTruth.zip and "
        f"{name}_Input.zip (https://challenge.isic-archive.com/data/#2018, Task 3) into {root!r}.")
  paths, labels = [], []
  with open(listing, newline="") as f:
    rows = csv.reader(f)
    header = next(rows, [])
    if tuple(header) != ("image",) + ISIC2018_CLASSES:
      raise ValueError(f"{listing}: header {header}, expected image,{','.join(ISIC2018_CLASSES)}.")
    for line, row in enumerate(rows, start=2):
      if not row:
        continue
      ones = [c for c, v in zip(ISIC2018_CLASSES, row[1:]) if float(v) == 1.0]
      if len(ones) != 1:
        raise ValueError(f"{listing} line {line} ({row[0]}): one-hot row with "
                         f"{len(ones)} ones {ones}; every image needs exactly one class.")
      path = os.path.join(root, f"{name}_Input", f"{row[0]}.jpg")
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{listing} line {line}: image {path!r} is missing.")
      paths.append(path)
      labels.append(ISIC2018_CLASSES.index(ones[0]))
  return _Files(paths, labels)


@data.register("isic2018")
def isic2018(config, split: str) -> data.Dataset:
  root = os.path.expanduser(config.get("data_dir") or "")
  return _dataset(isic2018_files(root, split), int(config.get("image_size", 224)),
                  (IMAGENET_MEAN, IMAGENET_STD), len(ISIC2018_CLASSES))

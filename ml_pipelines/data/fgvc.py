"""The FGVC benchmark of visual prompt / sparse tuning (VPT, Jia et al. 2022; SNELL, Shen et al.
2024): CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars.

`fgvc` (config.data.dataset = cub | nabirds | flowers | dogs | cars, data_dir, source):
- source="manual" (every set): the VPT layout, as the official SNELL loader reads it
  (`lib/datasets.py`): `<data_dir>/{train,val,test}.json`, each mapping an image path relative to
  the image root to its class id, with the image root `images/` (CUB, NABirds), `Images/` (Dogs) or
  the dataset directory itself (Flowers, Cars). Splits: `train` (train.json; the paper's `--test`
  setting trains on it and evaluates on `test`), `val`, `test`, `trainval` (train + val).
- source="tfds" (CUB `caltech_birds2011`, Flowers `oxford_flowers102`, Dogs `stanford_dogs`): the
  TFDS splits (the VPT json splits are not TFDS's; use manual for comparable numbers). NABirds and
  Cars have no usable TFDS builder (cars196's download is dead): manual only.
Train: timm `create_transform(is_training)`: random resized crop 224 (scale 0.08-1, ratio 3/4-4/3,
bicubic), flip 0.5, colour jitter 0.4; eval: short side 256 + centre crop 224; ImageNet mean/std.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.imagenet import MEAN, STD, center_crop, random_resized_crop

NUM_CLASSES = {"cub": 200, "nabirds": 555, "flowers": 102, "dogs": 120, "cars": 196}
IMAGE_ROOT = {"cub": "images", "nabirds": "images", "flowers": "", "dogs": "Images", "cars": ""}
TFDS_NAME = {"cub": "caltech_birds2011", "flowers": "oxford_flowers102", "dogs": "stanford_dogs"}
SPLITS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}


def _read_json(data_dir: str, part: str) -> dict[str, int]:
  path = os.path.join(data_dir, f"{part}.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} is missing: the FGVC sets use the VPT split files train.json / val.json / "
        f"test.json (github.com/KMnP/vpt, 'Dataset preparation') next to the images.")
  with open(path) as f:
    return {k: int(v) for k, v in json.load(f).items()}


def read_split(data_dir: str, split: str) -> list[tuple[str, int]]:
  """[(relative image path, label)] of a VPT split (json files in `data_dir`), in file order. The
  file's class ids map to contiguous labels in sorted order (the official `JSONDataset`; the order
  of train.json's ids, so every split shares one map)."""
  if split not in SPLITS:
    raise ValueError(f"FGVC split {split!r}; valid: {', '.join(SPLITS)}")
  label = {c: i for i, c in enumerate(sorted(set(_read_json(data_dir, "train").values())))}
  items = []
  for part in SPLITS[split]:
    items.extend((k, label[v]) for k, v in _read_json(data_dir, part).items())
  return items


class ImageFiles:
  """Random access over (path, label) pairs: {'image': uint8 [H, W, 3], 'label': int32}."""

  def __init__(self, root: str, items: list[tuple[str, int]]):
    self.root, self.items = root, items

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    from PIL import Image
    path, label = self.items[i]
    with Image.open(os.path.join(self.root, path)) as img:
      return {"image": np.asarray(img.convert("RGB"), np.uint8), "label": np.int32(label)}


class _TfdsFields:
  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    ex = self.source[i]
    return {"image": np.asarray(ex["image"], np.uint8), "label": np.int32(ex["label"])}


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.4) -> np.ndarray:
  """torchvision ColorJitter(b, c, s) as timm uses it: brightness, contrast and saturation factors
  U(1 - strength, 1 + strength), applied in a random order, on a uint8 image."""
  x = img.astype(np.float32)
  for op in rng.permutation(3):
    f = rng.uniform(1 - strength, 1 + strength)
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    if op == 0:
      x = x * f
    elif op == 1:
      x = f * x + (1 - f) * gray.mean()
    else:
      x = f * x + (1 - f) * gray[..., None]
    x = np.clip(x, 0, 255)
  return x.astype(np.uint8)


def preprocess(size: int, jitter: float = 0.4):
  def train(ex, rng):
    img = random_resized_crop(np.asarray(ex["image"], np.uint8), rng, size)
    if rng.random() < 0.5:
      img = img[:, ::-1]
    if jitter:
      img = color_jitter(np.ascontiguousarray(img), rng, jitter)
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": np.int32(ex["label"])}

  def evaluate(ex):
    img = center_crop(np.asarray(ex["image"], np.uint8), size)  # crop_pct 0.875: 256 -> 224
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": np.int32(ex["label"])}
  return train, evaluate


@data.register("fgvc")
def fgvc(config, split: str) -> data.Dataset:
  name = config.get("dataset", "cub")
  if name not in NUM_CLASSES:
    raise ValueError(f"FGVC dataset {name!r}; valid: {', '.join(NUM_CLASSES)}")
  source_kind = config.get("source", "manual")
  if source_kind == "tfds":
    if name not in TFDS_NAME:
      raise ValueError(f"FGVC {name!r} has no TFDS builder; use data.source='manual' with the VPT "
                       f"json splits (TFDS: {', '.join(TFDS_NAME)}).")
    from ml_pipelines.data.tfds_image import tfds_source
    source = _TfdsFields(tfds_source(TFDS_NAME[name], split, config.get("data_dir")))
  elif source_kind == "manual":
    data_dir = os.path.expanduser(config.get("data_dir") or f"data/fgvc/{name}")
    source = ImageFiles(os.path.join(data_dir, IMAGE_ROOT[name]), read_split(data_dir, split))
  else:
    raise ValueError(f"data.source={source_kind!r}; valid: manual, tfds")
  size = int(config.get("image_size", 224))
  train, evaluate = preprocess(size, float(config.get("color_jitter", 0.4)))
  spec = {"image": ((size, size, 3), np.float32), "label": ((), np.int32)}
  return data.Dataset(source=source, element_spec=spec,
                      preprocess=train, eval_preprocess=evaluate,
                      info={"num_classes": NUM_CLASSES[name]})

"""Retrieval datasets for deep hashing: `database` (training set, the codes V) and `query` splits.

Every example is `{"image": float32 [H, W, C], "labels": float32 [L] multi-hot}`; `info["labels"]`
holds the whole split's multi-hot labels (the task builds the database similarity from it without
reading images) and `info["num_classes"]` is L.

Registered:
- `digits_retrieval`: scikit-learn digits (embedded, no download): 20 queries per class (200),
  database the other 1,597 images.
- `cifar10_retrieval`: ADSH protocol on TFDS `cifar10` train + test (60,000): 100 queries per class
  (1,000), database the other 59,000; queries chosen with a fixed seed.
- `cub_retrieval`: TFDS `caltech_birds2011`, SEMICON protocol: query = official test split,
  database = train split.
- `hashing_records`: manual-directory sets (NUS-WIDE, MS-COCO, Market-1501, DukeMTMC-reID, CUHK03)
  written as ArrayRecord by `python -m ml_pipelines.prep.hashing`; splits as prepared
  (`database`/`query`, and for re-ID `train`/`query`/`gallery`).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import digits, records
from ml_pipelines.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ml_pipelines.data.tfds_image import MEAN_STD, _resize, tfds_source


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def query_database_split(labels: np.ndarray, per_class: int, seed: int = 0):
  """(query_rows, database_rows): `per_class` random queries of each class, the rest database."""
  rng = np.random.default_rng(seed)
  query = np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_class]
                          for k in np.unique(labels)])
  query = np.sort(query)
  return query, np.setdiff1d(np.arange(len(labels)), query)


def _dataset(source, labels, image_shape, preprocess=None, eval_preprocess=None) -> data.Dataset:
  return data.Dataset(source=source,
                      element_spec={"image": (tuple(image_shape), np.float32),
                                    "labels": ((labels.shape[1],), np.float32)},
                      preprocess=preprocess, eval_preprocess=eval_preprocess,
                      info={"labels": labels, "num_classes": labels.shape[1]})


def _check_split(split, valid):
  if split not in valid:
    raise ValueError(f"Splits are {valid}, not {split!r}.")


# --- embedded demo ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits():
  images, target = digits.load()
  return (images / 16.0).astype(np.float32)[..., None], target


@data.register("digits_retrieval")
def digits_retrieval(config, split: str) -> data.Dataset:
  del config
  _check_split(split, ("database", "query"))
  images, target = _digits()
  query, database = query_database_split(target, 20)
  rows = {"query": query, "database": database}[split]
  labels = one_hot(target[rows], 10)
  return _dataset(data.ArraySource({"image": images[rows], "labels": labels}), labels, (8, 8, 1))


# --- TFDS sets -------------------------------------------------------------------------------------
class _Rows:
  """Rows `rows` of several concatenated TFDS sources, as {'image' uint8, 'labels' multi-hot}."""

  def __init__(self, sources, rows, num_classes):
    self.sources, self.rows, self.num_classes = sources, rows, num_classes
    self.offsets = np.cumsum([0] + [len(s) for s in sources])

  def __len__(self):
    return len(self.rows)

  def __getitem__(self, i):
    g = int(self.rows[i])
    s = int(np.searchsorted(self.offsets, g, side="right") - 1)
    ex = self.sources[s][g - int(self.offsets[s])]
    return {"image": np.asarray(ex["image"]),
            "labels": one_hot(int(ex["label"]), self.num_classes)}


def _tfds_labels(name: str, split: str, source, data_dir: str | None) -> np.ndarray:
  """All labels of a TFDS split, read once and cached next to the data as .npy."""
  root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  path = os.path.join(root, name, f"labels_{split}.npy")
  if os.path.exists(path):
    return np.load(path)
  labels = np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)
  try:
    np.save(path, labels)
  except OSError:
    pass
  return labels


def _normaliser(name):
  mean, std = (np.asarray(v, np.float32) for v in MEAN_STD[name])
  return lambda img: ((img.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


@data.register("cifar10_retrieval")
def cifar10_retrieval(config, split: str) -> data.Dataset:
  """ADSH CIFAR-10 protocol (1,000 queries, 59,000 database); train augmentation: random flip."""
  _check_split(split, ("database", "query"))
  data_dir = config.get("data_dir")
  sources = [tfds_source("cifar10", s, data_dir) for s in ("train", "test")]
  target = np.concatenate([_tfds_labels("cifar10", s, src, data_dir)
                           for s, src in zip(("train", "test"), sources)])
  query, database = query_database_split(target, 100)
  rows = {"query": query, "database": database}[split]
  norm = _normaliser("cifar10")

  def train(ex, rng):
    img = ex["image"][:, ::-1] if rng.random() < 0.5 else ex["image"]
    return {"image": norm(img), "labels": ex["labels"]}

  def test(ex):
    return {"image": norm(ex["image"]), "labels": ex["labels"]}
  return _dataset(_Rows(sources, rows, 10), one_hot(target[rows], 10), (32, 32, 3), train, test)


@data.register("cub_retrieval")
def cub_retrieval(config, split: str) -> data.Dataset:
  """CUB-200-2011 (SEMICON protocol): database = train (5,994), query = test (5,794)."""
  _check_split(split, ("database", "query"))
  tfds_split = {"database": "train", "query": "test"}[split]
  size = int(config.get("image_size", 224))
  src = tfds_source("caltech_birds2011", tfds_split, config.get("data_dir"))
  target = _tfds_labels("caltech_birds2011", tfds_split, src, config.get("data_dir"))
  norm = _normaliser("caltech_birds2011")

  def train(ex, rng):
    img = _resize(ex["image"], size)
    img = img[:, ::-1] if rng.random() < 0.5 else img
    return {"image": norm(img), "labels": ex["labels"]}

  def test(ex):
    return {"image": norm(_resize(ex["image"], size)), "labels": ex["labels"]}
  return _dataset(_Rows([src], np.arange(len(src)), 200), one_hot(target, 200), (size, size, 3),
                  train, test)


# --- manual-directory sets (ArrayRecord) -----------------------------------------------------------
@data.register("hashing_records")
def hashing_records(config, split: str) -> data.Dataset:
  """Records written by `ml_pipelines.prep.hashing` under `config.data_dir`: `image` uint8
  [S, S, 3] and `labels`; labels of the whole split in `labels_<split>.npy`."""
  directory = config.get("data_dir")
  hint = ("python -m ml_pipelines.prep.hashing --format=list|reid --source_dir=SRC "
          f"--out_dir={directory}")
  if not directory or not os.path.isdir(directory):
    raise FileNotFoundError(f"Hashing records directory {directory!r} does not exist. "
                            f"Prepare it with: {hint}")
  source = records.RecordSource(directory, split, prepare_hint=hint)
  labels = np.load(os.path.join(directory, f"labels_{split}.npy")).astype(np.float32)
  size = int(config.get("image_size", 224))
  mean, std = (np.asarray(v, np.float32) for v in (IMAGENET_MEAN, IMAGENET_STD))

  def norm(img):
    if img.shape[0] != size:
      img = _resize(img, size)
    return ((img.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

  def train(ex, rng):
    img = ex["image"][:, ::-1] if rng.random() < 0.5 else ex["image"]
    return {"image": norm(img), "labels": ex["labels"].astype(np.float32)}

  def test(ex):
    return {"image": norm(ex["image"]), "labels": ex["labels"].astype(np.float32)}
  return _dataset(source, labels, (size, size, 3), train, test)

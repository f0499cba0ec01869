"""ImageNet-100 of the class-incremental literature: the ILSVRC2012 images of a listed subset of
classes, in the extracted class-folder layout that PODNet (arthurdouillard/
incremental_learning.pytorch, ``imagenet_split/{train,val}_100.txt``) and PyCIL read:

    <data_dir>/train/<wnid>/*.JPEG      (ILSVRC2012_img_train.tar and its per-class tars, extracted)
    <data_dir>/val/<wnid>/*.JPEG        (ILSVRC2012_img_val.tar sorted into class folders)

Only the folders of `config.data.classes` (a list of wnids) are read, so the dataset holds exactly
those classes, labelled by their position in that list (the continual task's `class_order` then
permutes them into tasks). TFDS `imagenet2012` keeps no per-class index: filtering it would read
every record once, so the subset is read from the folders.

Pipeline of PODNet's ``ImageNet100``: train RandomResizedCrop(224), horizontal flip, brightness
jitter 63/255; test short side 256 then centre crop 224; ImageNet mean / std.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.continual_medical import _Files, _images, _require_dir
from ml_pipelines.data.imagenet import MEAN, STD, center_crop, random_resized_crop


def subset_files(root: str, split: str, classes) -> _Files:
  """The images of `classes` (wnids) under ``root/split``, label = position in `classes`."""
  classes = list(classes)
  repeated = sorted({c for c in classes if classes.count(c) > 1})
  if repeated:
    raise ValueError(f"The ImageNet class list repeats {repeated}.")
  folder = os.path.join(os.path.expanduser(root), split)
  _require_dir(folder, f"ImageNet split {split!r}", "ml_pipelines/data/continual_imagenet.py")
  missing = [c for c in classes if not os.path.isdir(os.path.join(folder, c))]
  if missing:
    raise FileNotFoundError(f"{len(missing)} of the {len(classes)} listed classes have no folder "
                            f"under {folder!r}: {missing[:5]}{' ...' if len(missing) > 5 else ''}.")
  paths, labels = [], []
  for label, wnid in enumerate(classes):
    files = _images(os.path.join(folder, wnid))
    paths += files
    labels += [label] * len(files)
  return _Files(paths, labels)


@data.register("imagenet_subset")
def imagenet_subset(config, split: str) -> data.Dataset:
  size, jitter = int(config.get("image_size", 224)), 63 / 255
  files = subset_files(config.get("data_dir") or "", split, config.classes)

  def train(ex, rng):
    img = random_resized_crop(np.asarray(ex["image"], np.uint8), rng, size)
    img = img[:, ::-1] if rng.random() < 0.5 else img
    img = np.clip(img.astype(np.float32) * rng.uniform(1 - jitter, 1 + jitter), 0, 255)
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": ex["label"]}

  def test(ex):
    img = center_crop(np.asarray(ex["image"], np.uint8), size)
    return {"image": ((img - MEAN) / STD).astype(np.float32), "label": ex["label"]}
  return data.Dataset(source=files, preprocess=train, eval_preprocess=test,
                      element_spec={"image": ((size, size, 3), np.float32),
                                    "label": ((), np.int32)},
                      info={"num_classes": len(config.classes)})

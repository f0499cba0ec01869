"""CREMA-D and Kinetics-Sounds, read from the ArrayRecord files `python -m ml_pipelines.prep.av` writes.

Each record: `audio` [F, T, 1] float32 log-magnitude spectrogram (OGM-GE recipe, see prep_av),
`visual` [frames, S, S, 3] uint8 frames, `label` int32. Frames become float32 normalised with the
ImageNet mean/std (as the OGM-GE loaders' torchvision Normalize); training frames are flipped
horizontally with probability 1/2 (the loaders' RandomHorizontalFlip; their RandomResizedCrop is
left to the prep's resize).

Options (config.data): data_dir; val_fraction (0: splits as prepared, `train` and `test`) and
val_seed (0): with val_fraction > 0, split `val` is a seeded `round(val_fraction * N)` of the
prepared training records and split `train` the rest (ml_pipelines/data/holdout.py), so methods that
estimate weights on held-out data (G-Blending) never read the test split.
"""
from __future__ import annotations

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import holdout, records
from ml_pipelines.data.imagenet import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.asarray(IMAGENET_MEAN, np.float32)
STD = np.asarray(IMAGENET_STD, np.float32)
CLASSES = {"crema_d": 6, "kinetics_sounds": 31}


def _normalise(ex):
  v = (ex["visual"].astype(np.float32) / 255.0 - MEAN) / STD
  return {"audio": ex["audio"].astype(np.float32), "visual": v, "label": np.int32(ex["label"])}


def _train(ex, rng: np.random.Generator):
  ex = _normalise(ex)
  if rng.random() < 0.5:
    ex["visual"] = ex["visual"][:, :, ::-1].copy()
  return ex


def _builder(name):
  def build(config, split: str) -> data.Dataset:
    d = config.get("data_dir", f"data/{name}")
    fraction = float(config.get("val_fraction", 0.0))
    hint = f"python -m ml_pipelines.prep.av --dataset={name} --raw_dir=RAW --out_dir={d}"
    if fraction and split in holdout.SPLITS:
      source = holdout.carve(records.RecordSource(d, "train", prepare_hint=hint), split, fraction,
                             int(config.get("val_seed", 0)))
    else:
      source = records.RecordSource(d, split, prepare_hint=hint)
    spec = data.spec_of(_normalise(source[0]))
    return data.Dataset(source=source, element_spec=spec, preprocess=_train,
                        eval_preprocess=_normalise, info={"num_classes": CLASSES[name]})
  build.__doc__ = f"{name}: ArrayRecord audio-visual examples under config.data_dir."
  return build


for _name in CLASSES:
  data.register(_name)(_builder(_name))

"""`digits_rgb_classes`: the embedded `digits_rgb` restricted to some classes, relabelled 0..k-1 in
the given order (transfer demos: pretrain on digits 0-4, adapt to 5-9).

Options (config.data): classes (e.g. (5, 6, 7, 8, 9)), and every `digits_rgb` option.
"""
from __future__ import annotations

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.imagenet import digits_rgb


@data.register("digits_rgb_classes")
def digits_rgb_classes(config, split: str) -> data.Dataset:
  classes = [int(c) for c in config.get("classes", range(10))]
  full = digits_rgb(config, split)
  arrays = full.source.arrays
  keep = np.isin(arrays["label"], classes)
  relabel = np.full(10, -1, np.int32)
  relabel[classes] = np.arange(len(classes), dtype=np.int32)
  source = data.ArraySource({"image": arrays["image"][keep],
                             "label": relabel[arrays["label"][keep]]})
  return data.Dataset(source=source, element_spec=full.element_spec, preprocess=full.preprocess,
                      eval_preprocess=full.eval_preprocess, info={"num_classes": len(classes)})

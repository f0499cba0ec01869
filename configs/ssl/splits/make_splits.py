"""Regenerates the paper's labeled CIFAR splits in this directory from the official DSA repository.

    python configs/ssl/splits/make_splits.py OFFICIAL_DIR

OFFICIAL_DIR is a checkout of https://github.com/Qi2019KB/DSA. Its
`datasources/temp_data/{CIFAR10,CIFAR100}_50000_<labels>_32_7.json` hold `[labeled, unlabeled]`:
the labeled positions (in the original CIFAR file order, torchvision's and TFDS's `id`) repeated to
fill 1024 x 32 draws. Each `<dataset>_<labels>.npy` here keeps the distinct labeled positions
(uint16, sorted); the `labeled_unlabeled` sampler maps them to TFDS positions through the
`source_index` field of the `cifar*_ssl` datasets.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

SPLITS = {"cifar10": ("CIFAR10", (40, 250, 4000)), "cifar100": ("CIFAR100", (400, 2500, 10000))}


def main(official: str) -> None:
  here = os.path.dirname(os.path.abspath(__file__))
  for name, (prefix, counts) in SPLITS.items():
    for n in counts:
      path = os.path.join(official, "datasources", "temp_data", f"{prefix}_50000_{n}_32_7.json")
      with open(path) as f:
        labeled = np.unique(np.asarray(json.load(f)[0], np.int64))
      assert len(labeled) == n, (path, len(labeled))
      np.save(os.path.join(here, f"{name}_{n}.npy"), labeled.astype(np.uint16))
      print(name, n, labeled[:5])


if __name__ == "__main__":
  main(sys.argv[1])

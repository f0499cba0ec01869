"""Prepares manual-download retrieval sets as ArrayRecord for the `hashing_records` dataset.

    # NUS-WIDE (21 concepts) / MS-COCO, from ADSH/DeepHash-style lists "relative/path.jpg 0 1 0 ...":
    python -m ml_pipelines.prep.hashing --format=list --source_dir=~/nus_wide/images \
        --database_list=~/nus_wide/database.txt --query_list=~/nus_wide/test.txt \
        --out_dir=data/nus_wide [--image_size=224]
    # Person re-ID (Market-1501, DukeMTMC-reID, CUHK03-NP): the standard folder layout with
    # bounding_box_train/, query/, bounding_box_test/ and names "PID_cC...jpg":
    python -m ml_pipelines.prep.hashing --format=reid --source_dir=~/Market-1501-v15.09.15 \
        --out_dir=data/market1501

Writes `<out_dir>/<split>.array_record-*` with examples {"image": uint8 [S, S, 3], "labels": float32
multi-hot} and `<out_dir>/labels_<split>.npy`. List format: splits `database` and `query`. Re-ID:
`database` (bounding_box_train), `query` and `gallery` (bounding_box_test); labels are one-hot
identities over all identities of the three folders (junk id -1 dropped; distractors 0000 get an
all-zero label, so they are never relevant).
"""
from __future__ import annotations

import argparse
import os
import re

import numpy as np

from ml_pipelines.data import records


def _load_image(path: str, size: int) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as img:
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def read_list(path: str) -> tuple[list[str], np.ndarray]:
  """Lines 'relative/path v1 v2 ... vL' -> (paths, multi-hot [N, L] float32)."""
  paths, labels = [], []
  with open(os.path.expanduser(path)) as f:
    for line in f:
      parts = line.split()
      if parts:
        paths.append(parts[0])
        labels.append([float(v) for v in parts[1:]])
  return paths, np.asarray(labels, np.float32)


REID_SPLITS = {"database": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_REID_NAME = re.compile(r"^(-?\d+)_c(\d+)")


def reid_files(source_dir: str) -> dict[str, list[tuple[str, int]]]:
  """split -> [(path, identity)], junk (-1) dropped, sorted by file name."""
  out = {}
  for split, folder in REID_SPLITS.items():
    d = os.path.join(source_dir, folder)
    if not os.path.isdir(d):
      raise FileNotFoundError(f"Re-ID folder {d!r} is missing (expected {sorted(REID_SPLITS.values())}).")
    items = []
    for name in sorted(os.listdir(d)):
      m = _REID_NAME.match(name)
      if m and int(m.group(1)) != -1:
        items.append((os.path.join(d, name), int(m.group(1))))
    out[split] = items
  return out


def write_split(out_dir: str, split: str, paths, labels, size: int, num_shards: int = 1) -> None:
  labels = np.asarray(labels, np.float32)
  examples = ({"image": _load_image(p, size), "labels": l} for p, l in zip(paths, labels))
  records.write(out_dir, split, examples, num_shards)
  np.save(os.path.join(out_dir, f"labels_{split}.npy"), labels)
  print(f"{split}: {len(labels)} examples, {labels.shape[1]} labels -> {out_dir}", flush=True)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--format", choices=("list", "reid"), required=True)
  p.add_argument("--source_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--database_list")
  p.add_argument("--query_list")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--num_shards", type=int, default=1)
  args = p.parse_args(argv)
  source = os.path.expanduser(args.source_dir)
  os.makedirs(args.out_dir, exist_ok=True)
  if args.format == "list":
    if not (args.database_list and args.query_list):
      p.error("--format=list needs --database_list and --query_list")
    for split, lst in (("database", args.database_list), ("query", args.query_list)):
      rel, labels = read_list(lst)
      write_split(args.out_dir, split, [os.path.join(source, r) for r in rel], labels,
                  args.image_size, args.num_shards)
  else:
    files = reid_files(source)
    ids = sorted({pid for items in files.values() for _, pid in items if pid != 0})
    column = {pid: i for i, pid in enumerate(ids)}
    for split, items in files.items():
      labels = np.zeros((len(items), len(ids)), np.float32)
      for row, (_, pid) in enumerate(items):
        if pid != 0:
          labels[row, column[pid]] = 1.0
      write_split(args.out_dir, split, [path for path, _ in items], labels, args.image_size,
                  args.num_shards)


if __name__ == "__main__":
  main()

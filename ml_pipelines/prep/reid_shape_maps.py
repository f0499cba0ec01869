"""Body-shape maps for SGIEL (Feng et al., CVPR 2023, arXiv 2304.04205, Sec. 4.1) from a human
parser's output, in the layout the `sysu_mm01` / `regdb` builders read (`shape_dir`).

    python -m ml_pipelines.prep.reid_shape_maps --parsing_dir=~/sysu_parsing \
        --out_dir=data/SYSU-MM01-shape [--image_dir=data/SYSU-MM01]

The parser is SCHP (Li et al., "Self-Correction for Human Parsing", TPAMI 2020;
GobletQ/Self-Correction-Human-Parsing `simple_extractor.py --dataset pascal`) with the
Pascal-Person-Part labels 0 background, 1 head, 2 torso, 3 upper arms, 4 lower arms, 5 upper legs,
6 lower legs. `parsing_dir` mirrors the image tree (run the extractor once per image folder) and
holds, per image, either its part-label PNG (`<name>.png`, palette or grey, values 0..6) or, with
the extractor's `--logits`, its logits (`<name>.npy`, [H, W, 7]; preferred when both exist).

Per pixel the shape map is the summed probability of head, torso and limbs,
`s = sum_{c=1..6} softmax(logits)_c` (= 1 - p(background)); from a label PNG it is the indicator
of a body part. Written as an 8-bit grey PNG `round(255 s)` at `out_dir/<relative path>.png`; the
builders read it as RGB (grey in all three channels) and resize it as the image. With `image_dir`
every image (.jpg, .jpeg, .png, .bmp) under it must have a parsing, or the command fails naming the
first missing ones before writing anything.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

NUM_PARTS = 7  # Pascal-Person-Part: background + 6 body parts
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def shape_from_labels(labels: np.ndarray) -> np.ndarray:
  """uint8 [H, W] shape map of a part-label map (values 0..6): 255 on body parts, 0 elsewhere."""
  labels = np.asarray(labels)
  if labels.max() >= NUM_PARTS:
    raise ValueError(f"part labels up to {NUM_PARTS - 1} expected (Pascal-Person-Part), got "
                     f"{int(labels.max())}")
  return np.where(labels > 0, 255, 0).astype(np.uint8)


def shape_from_logits(logits: np.ndarray) -> np.ndarray:
  """uint8 [H, W] shape map of parser logits [H, W, 7]: round(255 * (1 - softmax_background))."""
  logits = np.asarray(logits, np.float64)
  if logits.shape[-1] != NUM_PARTS:
    raise ValueError(f"logits [H, W, {NUM_PARTS}] expected, got {logits.shape}")
  z = np.exp(logits - logits.max(-1, keepdims=True))
  body = z[..., 1:].sum(-1) / z.sum(-1)
  return np.round(255 * body).astype(np.uint8)


def parsings(parsing_dir: str) -> dict[str, str]:
  """{relative path without extension: parsing file}, logits (.npy) preferred over labels (.png)."""
  out = {}
  for root, _, files in os.walk(parsing_dir):
    for f in sorted(files):
      stem, ext = os.path.splitext(f)
      if ext in (".png", ".npy"):
        rel = os.path.relpath(os.path.join(root, stem), parsing_dir)
        if ext == ".npy" or rel not in out:
          out[rel] = os.path.join(root, f)
  return out


def write_shape_maps(parsing_dir: str, out_dir: str, image_dir: str | None = None) -> int:
  """Writes every shape map (module docstring); returns their number."""
  from PIL import Image
  found = parsings(parsing_dir)
  if image_dir is not None:
    images = [os.path.relpath(os.path.join(r, os.path.splitext(f)[0]), image_dir)
              for r, _, fs in os.walk(image_dir) for f in sorted(fs)
              if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
    missing = sorted(set(images) - set(found))
    if missing:
      raise FileNotFoundError(f"{len(missing)} images under {image_dir} have no parsing in "
                              f"{parsing_dir}, e.g. {missing[:5]}")
  for rel, path in sorted(found.items()):
    if path.endswith(".npy"):
      shape = shape_from_logits(np.load(path))
    else:
      with Image.open(path) as img:
        shape = shape_from_labels(np.asarray(img))  # palette images read as their indices
    dest = os.path.join(out_dir, rel + ".png")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    Image.fromarray(shape, "L").save(dest)
  return len(found)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parsing_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--image_dir", help="check that every image under it has a parsing")
  args = p.parse_args(argv)
  ex = os.path.expanduser
  n = write_shape_maps(ex(args.parsing_dir), ex(args.out_dir),
                       ex(args.image_dir) if args.image_dir else None)
  print(f"wrote {n} shape maps under {args.out_dir}")


if __name__ == "__main__":
  main()

"""Embedded AUCSeg demo: long-tailed digit scenes (no download), cross-entropy vs CE + AUC loss vs
CE + AUC + T-Memory Bank, head and tail mIoU, and a picture of predicted masks.

    python -m ml_pipelines.jobs.aucseg_demo [--workdir=/tmp/aucseg_demo] [--steps=500]
        [--methods=ce,auc,aucseg] [--cpu_devices=N]

Each variant trains `configs/segmentation/aucseg.py:digits,<variant>` (ResNet-18 at width 16 +
SegFormer head, 48 x 48 scenes whose digits 7, 8, 9 -- classes 8, 9, 10 -- are rare) for `--steps`
steps; `<workdir>/masks.png` shows, for a few test scenes, the image, the ground truth and each
variant's prediction.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ml_pipelines.jobs import common

METHODS = ("ce", "auc", "aucseg")
NAMES = {"ce": "CE", "auc": "CE + AUC", "aucseg": "CE + AUC + T-Memory Bank"}
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                    [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                    [210, 245, 60], [250, 190, 190], [255, 255, 255]], np.uint8)


def predict(config, state, images):
  """Argmax masks of `images` with the trained weights in `state` (eval mode)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  import models
  from ml_pipelines import train
  from ml_pipelines.tasks.segmentation import resize_bilinear
  model = models.build(config.model, seed=config.seed)
  model.eval()
  graphdef, _, _ = nnx.split(model, nnx.Param, ...)
  params, rest = train.Env.variables(state)
  model = nnx.merge(graphdef, params, rest)
  logits = resize_bilinear(model(jnp.asarray(images)), *images.shape[1:3])
  return np.asarray(jax.device_get(jnp.argmax(logits, -1)))


def save_masks(path, images_u8, labels, predictions: dict, scale: int = 3):
  from PIL import Image
  rows = []
  for i in range(len(images_u8)):
    cells = [images_u8[i], PALETTE[np.where(labels[i] == 255, 11, labels[i])]]
    cells += [PALETTE[p[i]] for p in predictions.values()]
    rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=128)
                                for c in cells], axis=1))
  grid = np.concatenate(rows, axis=0)
  Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                               Image.NEAREST).save(path)


def main(argv=None) -> None:
  parser = common.parser(__doc__, workdir="/tmp/aucseg_demo", methods=METHODS)
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--pictures", type=int, default=4)
  args = parser.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  from ml_pipelines.data import segmentation as seg_data
  images_u8, labels = seg_data.render_scenes(args.pictures, seed=1)
  rows, predictions = [], {}
  for method in args.methods.split(","):
    config = common.load_config("segmentation", "aucseg", f"digits,{method}")
    config.total_steps = config.eval_every = args.steps
    config.checkpoint_every = args.steps
    start = time.time()
    out = train.train_and_evaluate(config, os.path.join(args.workdir, method))
    rows.append([NAMES[method], *(f"{100 * out[f'eval/{k}']:.1f}"
                                  for k in ("mIoU", "mIoU_head", "mIoU_tail", "pixel_accuracy")),
                 f"{time.time() - start:.0f}"])
    predictions[NAMES[method]] = predict(config, out["state"], seg_data.normalise(images_u8))
  os.makedirs(args.workdir, exist_ok=True)
  path = os.path.join(args.workdir, "masks.png")
  save_masks(path, images_u8, labels, predictions)
  print(f"\nAUCSeg on long-tailed digit scenes ({args.steps} steps; tail = digits 7, 8, 9; "
        "mIoU in %, test split of 200 scenes):")
  print(common.markdown_table(
      ["method", "mIoU", "head mIoU", "tail mIoU", "pixel acc.", "time (s)"], rows))
  print(f"masks: {path} (columns: image, ground truth, {', '.join(predictions)})")


if __name__ == "__main__":
  main()

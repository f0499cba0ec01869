"""Lists every activation the Stable Diffusion UNet offers as a tap: id, shape (NHWC, batch 1) and
channels, for an image size (the official extractor's `--show_all_layers`). Nothing is computed:
the UNet is traced abstractly, so SD-1.5 at 512 px lists in seconds without weights.

    python -m ml_pipelines.jobs.diffusion_activations [--img_size=512] [--weights_dir=DIR]
        [--set=practical] [--attention=up_cross] [--model=sdxl]

`--weights_dir` reads the UNet's `config.json` (default: SD-1.5's, or SDXL-base's with
`--model=sdxl`, e.g. `--model=sdxl --img_size=1024 --set=xl_practical`); `--set` (a name of
`models.diffusion.activation_sets` or an official JSON file) prints only that set and its total.
"""
from __future__ import annotations

import argparse

from ml_pipelines.jobs import common


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--img_size", type=int, default=512)
  p.add_argument("--weights_dir", default="")
  p.add_argument("--set", default="")
  p.add_argument("--attention", default="", help="comma-separated, e.g. up_cross")
  p.add_argument("--model", default="sd15", choices=("sd15", "sdxl"))
  args = p.parse_args(argv)
  from models.diffusion import activation_sets, unet as unet_lib, weights
  if args.weights_dir:
    config = weights.read_config(weights.component_dir(args.weights_dir, "unet"))
    options = unet_lib.options_from_diffusers(config)
  else:
    options = {}
  base = unet_lib.SDXL if args.model == "sdxl" else unet_lib.SD15
  model = weights.build_abstract(unet_lib.UNet, {**base, **options})
  attention = tuple(a for a in args.attention.split(",") if a)
  ids = None
  if args.set:
    ids, attention = activation_sets.load(args.set, attention or None)
  shapes = activation_sets.activation_shapes(model, args.img_size // 8, attention=attention)
  rows = [[k, "x".join(map(str, s)), s[-1]] for k, s in shapes.items()
          if ids is None or k in ids or k == "attn"]
  print(common.markdown_table(["activation id", "shape", "channels"], rows))
  if ids is not None:
    missing = [i for i in ids if i not in shapes]
    if missing:
      raise SystemExit(f"unknown ids in the set: {missing}")
    print(f"\ntotal channels: {sum(r[2] for r in rows)}")


if __name__ == "__main__":
  main()

"""ResNet-50 with the DeiT recipe (as DeiT III / timm "A3"-style baselines), or ResNet-18 at width 8
on the embedded digits_rgb.

    python -m ml_pipelines.train --config=configs/backbones/resnet.py:imagenet2012 --workdir=workdirs/r50
    python -m ml_pipelines.train --config=configs/backbones/resnet.py:digits_rgb --workdir=/tmp/r18
"""
from configs.backbones.common import deit_config


def get_config(arg=None):
  c = deit_config("resnet50", arg, base_lr=1e-3, weight_decay=0.05, drop_path=0.0,
                  converter="timm_resnet")
  del c.model["drop_path"]  # ResNet has no stochastic depth here
  if arg == "digits_rgb":
    c.model.name, c.model.width = "resnet18", 8
  return c

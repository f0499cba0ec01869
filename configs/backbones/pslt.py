"""PSLT on ImageNet (paper: DeiT recipe, AdamW lr 5e-4, wd 0.025, drop-path 0.2), or the embedded
digits_rgb at tiny width (32x32: the ladder stages see the whole map as one window).

    python -m ml_pipelines.train --config=configs/backbones/pslt.py:imagenet2012 --workdir=workdirs/pslt
    python -m ml_pipelines.train --config=configs/backbones/pslt.py:digits_rgb --workdir=/tmp/pslt
Variants: --config.model.name=pslt_tiny / pslt_large.
"""
from configs.backbones.common import deit_config


def get_config(arg=None):
  c = deit_config("pslt", arg, base_lr=5e-4 * 2, weight_decay=0.025, drop_path=0.2,
                  tiny_model=dict(embed_dim=6, conv_depths=(1, 1), depths=(1, 1), num_heads=(1, 2),
                                  img_size=32),
                  converter="pslt")
  if (arg or "imagenet2012") == "imagenet2012":
    c.model.img_size = 224
  return c

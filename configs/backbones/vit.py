"""ViT-B/16 with the DeiT recipe (lr 5e-4 per 512, wd 0.05, drop-path 0.1), or a 2-block ViT with
patch 8 on the embedded digits_rgb.

    python -m ml_pipelines.train --config=configs/backbones/vit.py:imagenet2012 --workdir=workdirs/vit_b16
    python -m ml_pipelines.train --config=configs/backbones/vit.py:digits_rgb --workdir=/tmp/vit
ViT-L/16: --config.model.name=vit_l16.
"""
from configs.backbones.common import deit_config


def get_config(arg=None):
  return deit_config("vit_b16", arg, base_lr=1e-3, weight_decay=0.05, drop_path=0.1,
                     tiny_model=dict(embed_dim=16, depth=2, num_heads=2, patch_size=8, img_size=32),
                     converter="timm_vit")

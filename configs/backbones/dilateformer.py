"""DilateFormer-T on ImageNet (paper: DeiT recipe, AdamW lr 1e-3 at batch 1024, wd 0.05, 10 warm-up
epochs, drop-path 0.1) or the embedded digits_rgb at tiny width.

    python -m ml_pipelines.train --config=configs/backbones/dilateformer.py:imagenet2012 \
        --workdir=workdirs/dilateformer_t    # ImageNet from $TFDS_DATA_DIR
    python -m ml_pipelines.train --config=configs/backbones/dilateformer.py:digits_rgb --workdir=/tmp/df
Small / Base: --config.model.name=dilateformer_small (drop_path 0.2) / dilateformer_base (0.3).
"""
from configs.backbones.common import deit_config


def get_config(arg=None):
  return deit_config("dilateformer_tiny", arg, base_lr=1e-3, weight_decay=0.05, drop_path=0.1,
                     warmup_epochs=10, tiny_model=dict(embed_dim=6, depths=(1, 1, 1, 1),
                                                       num_heads=(3, 3, 3, 3)),
                     converter="dilateformer")

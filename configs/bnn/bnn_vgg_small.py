"""ReSTE bnn_vgg_small: `--config=configs/bnn/bnn_vgg_small.py:cifar10` (paper recipe) or `:digits` (embedded).

    python -m ml_pipelines.train --config=configs/bnn/bnn_vgg_small.py:digits --workdir=/tmp/bnn_vgg_small
"""
from configs.bnn.common import bnn_config


def get_config(arg: str | None = None):
  return bnn_config("bnn_vgg_small", arg, cifar_width=128, digits_width=16, image_size=(32, 8))

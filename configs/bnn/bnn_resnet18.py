"""ReSTE bnn_resnet18: `--config=configs/bnn/bnn_resnet18.py:cifar10` (paper recipe) or `:digits` (embedded).

    python -m ml_pipelines.train --config=configs/bnn/bnn_resnet18.py:digits --workdir=/tmp/bnn_resnet18
"""
from configs.bnn.common import bnn_config


def get_config(arg: str | None = None):
  return bnn_config("bnn_resnet18", arg, cifar_width=64, digits_width=8)

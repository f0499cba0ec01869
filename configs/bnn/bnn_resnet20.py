"""ReSTE bnn_resnet20: `--config=configs/bnn/bnn_resnet20.py:cifar10` (paper recipe) or `:digits` (embedded).

    python -m ml_pipelines.train --config=configs/bnn/bnn_resnet20.py:digits --workdir=/tmp/bnn_resnet20
"""
from configs.bnn.common import bnn_config


def get_config(arg: str | None = None):
  return bnn_config("bnn_resnet20", arg, cifar_width=16, digits_width=16)

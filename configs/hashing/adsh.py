"""ADSH (Jiang & Li, AAAI 2018): ResNet-50 + Linear + tanh, asymmetric loss, discrete V update.

    python -m ml_pipelines.train --config=configs/hashing/adsh.py:digits,12 --workdir=/tmp/adsh
    python -m ml_pipelines.train --config=configs/hashing/adsh.py:cifar10,12 --workdir=workdirs/adsh_c10

Official PyTorch defaults: gamma 200, m 2000, T_in 3, T_out 50, batch 64, SGD lr 1e-3, wd 5e-4
(one outer iteration = T_in m / batch = 94 steps).
"""
from configs.hashing.common import base_config


def get_config(arg=None):
  return base_config(arg, model=dict(name="adsh_net"), task=dict(name="adsh", gamma=200.0),
                     lr=1e-3, momentum=0.0, weight_decay=5e-4, batch_size=64)

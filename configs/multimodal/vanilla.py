"""Vanilla joint training: fused cross-entropy only (the OGM-GE paper's baseline, CVPR 2022; official
training recipe: SGD lr 1e-3, momentum 0.9, wd 1e-4, StepLR(70, 0.1), 100 epochs, batch 64).

    python -m ml_pipelines.train --config=configs/multimodal/vanilla.py:demo,concat --workdir=/tmp/av
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  return base_config(arg, lr=1e-3, epochs=100, step_epochs=70)

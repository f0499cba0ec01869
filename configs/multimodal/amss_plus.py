"""AMSS_PLUS (Wei et al., arXiv 2404.08347, TPAMI; official njustkmg/TPAMI-AMSS): modality-significance
guided gradient-filter sampling (optim/amss.py). Official recipe: SGD lr 0.01, momentum 0.9, wd 1e-4,
80 epochs, batch 64, concat fusion; temperature 0.2 for audio-visual.

    python -m ml_pipelines.train --config=configs/multimodal/amss_plus.py:demo,concat \
        --workdir=/tmp/amssp
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  c = base_config(arg, lr=0.01, epochs=80, transforms=("amss_plus",))
  c.optimizer.amss_plus = dict(variant="audio_visual", temperature=0.2)
  return c

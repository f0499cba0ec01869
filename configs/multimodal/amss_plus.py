"""AMSS_PLUS (Wei et al., arXiv 2404.08347, TPAMI; official njustkmg/TPAMI-AMSS): modality-significance
guided gradient-filter sampling (optim/amss.py) on the residual blocks' convs. Official recipe
(AMSS/train_test.py and the README's commands): ResNet-18 encoders with GELU (AMSS/backbone.py),
SGD lr 0.01, momentum 0.9, weight decay 1e-4 on every parameter, StepLR x0.1 at epoch 60
(`--patience=60`) of 80, batch 64, concat fusion; temperature 0.2 for audio-visual.

    python -m ml_pipelines.train --config=configs/multimodal/amss_plus.py:demo,concat \
        --workdir=/tmp/amssp
"""
from configs.multimodal.common import base_config
from models import audiovisual


def get_config(arg=None):
  c = base_config(arg, lr=0.01, epochs=80, step_epochs=60, transforms=("amss_plus",),
                  activation="gelu")
  c.optimizer.amss_plus = dict(variant="audio_visual", temperature=0.2,
                                kernels=audiovisual.MASKED_KERNELS)
  return c

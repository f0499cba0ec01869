"""MMPareto (Wei & Hu, ICML 2024, Alg. 1): loss `L_mm + sum_u L_u`, Pareto integration of the
multimodal and unimodal gradients per encoder (optim/mmpareto.py, gamma 1.5). Training recipe as
OGM-GE (SGD lr 1e-3, momentum 0.9, wd 1e-4), concat fusion slices as unimodal logits.

    python -m ml_pipelines.train --config=configs/multimodal/mmpareto.py:demo,concat \
        --workdir=/tmp/mmpareto
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70, transforms=("mmpareto",),
                  task=dict(unimodal_loss_weight=1.0, grad_terms=True))
  c.optimizer.mmpareto = dict(gamma=1.5)
  return c

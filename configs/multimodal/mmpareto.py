"""MMPareto (Wei & Hu, ICML 2024, Alg. 1): loss `L_mm + sum_u L_u`, Pareto integration of the
multimodal and unimodal gradients per encoder (optim/mmpareto.py, gamma 1.5). Official defaults
(GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py): SGD lr 2e-3, momentum 0.9, weight decay 1e-4 on
every parameter, 50 epochs, StepLR x0.1 at epoch 30, batch 64; the unimodal logits come from separate
heads Linear(512, C) (`head_audio`, `head_video`), outside the Pareto-integrated encoder groups.

    python -m ml_pipelines.train --config=configs/multimodal/mmpareto.py:demo,concat \
        --workdir=/tmp/mmpareto
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  c = base_config(arg, lr=2e-3, epochs=50, step_epochs=30, transforms=("mmpareto",),
                  task=dict(unimodal_loss_weight=1.0, grad_terms=True), modality_heads=True)
  c.optimizer.mmpareto = dict(gamma=1.5)
  return c

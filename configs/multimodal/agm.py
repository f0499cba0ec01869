"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient Modulation", ICCV
2023; official lihong2303/AGM_ICCV2023): scales each modality's gradient path by
`exp(alpha * min(running_ratio - ratio, 10))` (optim/agm.py), alpha 0.1. As the official GradMod:
the modality logits are the Shapley estimates from two extra eval-mode passes with one input zeroed
(task `agm_shapley`), whose gradient paths the transform scales (encoders and fusion layer), and the
gradient norm is clipped to 1 when a fusion-weight gradient entry leaves [-1, 1]. Set
`task.agm_shapley=False` for the cheaper approximation (concat-fusion slices as modality logits, the
encoders' groups scaled, the fusion layer not; one pass). Training recipe as OGM-GE.

    python -m ml_pipelines.train --config=configs/multimodal/agm.py:demo,concat --workdir=/tmp/agm
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70, transforms=("agm",),
                  task=dict(agm_shapley=True))
  c.optimizer.agm = dict(alpha=0.1)
  return c

"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient Modulation", ICCV
2023): scales each encoder's gradients by `exp(alpha * min(running_ratio - ratio, 7))` (optim/agm.py),
alpha 0.1. The modality logits are the concat fusion's slices (for a linear head the Shapley
estimate of the code up to the shared bias). Training recipe as OGM-GE.

    python -m ml_pipelines.train --config=configs/multimodal/agm.py:demo,concat --workdir=/tmp/agm
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70, transforms=("agm",))
  c.optimizer.agm = dict(alpha=0.1)
  return c

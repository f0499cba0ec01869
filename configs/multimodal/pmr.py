"""PMR (Fan et al., CVPR 2023, Eqs. 3-9): prototypical cross-entropy on the slower modality
(losses/balancing.py; prototypes with momentum 0.2, weight alpha 0.6 as the notes). Training recipe
as OGM-GE.

    python -m ml_pipelines.train --config=configs/multimodal/pmr.py:demo,concat --workdir=/tmp/pmr
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  return base_config(arg, lr=1e-3, epochs=100, step_epochs=70,
                     task=dict(pmr_alpha=0.6, pmr_momentum=0.2))

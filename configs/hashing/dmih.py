"""DMIH (arXiv 1905.10980): one code block per branch, SAMI loss, block-wise multi-index tables.

    python -m ml_pipelines.train --config=configs/hashing/dmih.py:digits,12 --workdir=/tmp/dmih
    python -m ml_pipelines.train --config=configs/hashing/dmih.py:market1501,64 --workdir=workdirs/dmih

Trained in ADSH's asymmetric loop; SAMI keeps same-identity block distances within floor(r/m).
"""
from configs.hashing.common import base_config


def get_config(arg=None):
  return base_config(arg, model=dict(name="dmih", num_blocks=4),
                     task=dict(name="dmih", gamma=200.0, sami_weight=1.0, sami_radius=4),
                     lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=64)

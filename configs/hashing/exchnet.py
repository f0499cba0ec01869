"""ExchNet (Cui et al., ECCV 2020): parts, diversity losses, feature exchange with class anchors.

    python -m ml_pipelines.train --config=configs/hashing/exchnet.py:digits,12 --workdir=/tmp/exchnet
    python -m ml_pipelines.train --config=configs/hashing/exchnet.py:cub,32 --workdir=workdirs/exch_cub

Hash loss = ADSH loss x 12/c; M = 4 parts; alignment and feature exchange start at the second half
of the outer iterations (they need trained parts to make useful anchors).
"""
from configs.hashing.common import base_config


def get_config(arg=None):
  c = base_config(arg, model=dict(name="exchnet", num_parts=4),
                  task=dict(name="exchnet", gamma=200.0, sp_weight=1.0, ch_weight=1.0,
                            align_weight=0.1),
                  lr=1e-3, momentum=0.9, weight_decay=1e-4, batch_size=16)
  c.task.align_start = c.total_steps // c.task.outer_steps // 2
  return c

"""ExchNet (Cui et al., ECCV 2020): parts, diversity losses, feature exchange with class anchors.

    python -m ml_pipelines.train --config=configs/hashing/exchnet.py:digits,12 --workdir=/tmp/exchnet
    python -m ml_pipelines.train --config=configs/hashing/exchnet.py:cub,32 --workdir=workdirs/exch_cub

No official code; the defaults follow the reimplementation by SEMICON's authors
(aassxun/DSH_Analysis, `models/exchnet_loss.py`, `adsh_exchnet.py`): hash loss = ADSH loss x 12/c
without the quantization term (gamma 0; `--quan-loss` there, gamma 200 here, turns it on), diversity
and alignment weights 1, the alignment one Frobenius norm over the batch. M = 4 parts; alignment and
feature exchange start at the second half of the outer iterations (they need trained parts to make
useful anchors).
"""
from configs.hashing.common import base_config


def get_config(arg=None):
  c = base_config(arg, model=dict(name="exchnet", num_parts=4),
                  task=dict(name="exchnet", gamma=0.0, sp_weight=1.0, ch_weight=1.0,
                            align_weight=1.0, align_norm="batch"),
                  lr=1e-3, momentum=0.9, weight_decay=1e-4, batch_size=16)
  c.task.align_start = c.total_steps // c.task.outer_steps // 2
  return c

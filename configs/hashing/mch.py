"""MCH (arXiv 2008.01503): several region codes per image and a REINFORCE code-selection policy.

    python -m ml_pipelines.train --config=configs/hashing/mch.py:digits,12 --workdir=/tmp/mch
    python -m ml_pipelines.train --config=configs/hashing/mch.py:nus_wide,32 --workdir=workdirs/mch

Stage 1 (the first 3/4 of the steps) trains the hashing model, stage 2 the selection policy.
"""
from configs.hashing.common import base_config


def get_config(arg=None):
  c = base_config(arg, model=dict(name="mch"), task=dict(name="mch", gamma=200.0, reward_cost=0.02),
                  lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=64)
  c.task.policy_start = c.total_steps * 3 // 4 // c.task.outer_steps * c.task.outer_steps
  return c

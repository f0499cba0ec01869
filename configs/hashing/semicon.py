"""SEMICON (Shen et al., ECCV 2022): SEM attention, ICON channel transformer, global + local codes.

    python -m ml_pipelines.train --config=configs/hashing/semicon.py:digits,12 --workdir=/tmp/semicon
    python -m ml_pipelines.train --config=configs/hashing/semicon.py:cub,32 --workdir=workdirs/sem_cub

Official: SGD Nesterov lr 2.5e-4, momentum 0.91, wd 1e-4, batch 16, 40 outer iterations of 30 epochs
over m = 2000 points (3750 steps each), gamma 200, alpha 0.15, V initialised to randn
(aassxun/SEMICON `SEMICON_train.py`). The `digits` demo's tiny trunk (32 channels) gets one SEM
narrowing round instead of the official two (1024 -> 64 channels). From ImageNet, as the official
code's `strict=False` load does: the trunk and blocks 0-1 of each refine branch (its layer4.2 keys
land on a channel-transformer slot and are dropped), SEM and the third blocks start random.
"""
from configs.hashing.common import base_config, parse


def get_config(arg=None):
  rounds = 1 if parse(arg)[0] == "digits" else 2
  c = base_config(arg, model=dict(name="semicon", alpha=0.15, attention_rounds=rounds),
                  task=dict(name="semicon", gamma=200.0, v_init="randn"),
                  lr=2.5e-4, momentum=0.91, nesterov=True, weight_decay=1e-4, batch_size=16,
                  steps_per_outer=3750, outer_iterations=40)
  if "init_from" in c:
    c.init_from.skip = r"^(?!trunk/|global_stage/blocks/[01]/|local_stage/blocks/[01]/)"
  return c

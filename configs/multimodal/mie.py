"""MIE / IGM (Jiang, Chi, Yang, arXiv 2407.04587, IJCAI 2025; official njustkmg/IJCAI25-IGM):
alternating unimodal stages with flat-loss mixing and gradient projection (optim/mie.py), per-modality
heads Linear(512,256)-ReLU-Linear(256,64)-Linear(64,C), mixup Beta(1,1), prediction = mean softmax.
Official recipe: SGD lr 0.01, momentum 0.9, wd 1e-4, batch 12; stages (epochs) CREMA-D [25, 50] x 6,
Kinetics-Sounds [25, 50, 25, 50], audio first; step loss 0.7 mixup CE + 0.3 CE with the unmixed
labels (task `mie_flat_ratio`; its SAM rho 1e-10 has no effect and is left out), tau 0.4. The code's
StepLR(40) restarts with the optimizer at each stage; here the rate is constant.

    python -m ml_pipelines.train --config=configs/multimodal/mie.py:demo,concat --workdir=/tmp/mie
"""
from configs.multimodal.common import HEAD_GROUPS, base_config, parse, steps

STAGES = {"demo": (3, 3, 2, 2), "cremad": (25, 50) * 6, "kinetics_sounds": (25, 50, 25, 50)}


def get_config(arg=None):
  dataset, _ = parse(arg)
  epochs = sum(STAGES[dataset])
  c = base_config(arg, lr=0.01, epochs=epochs, batch_size=12, transforms=("mie",),
                  modality_heads=True, head_hidden=(256, 64),
                  groups=HEAD_GROUPS)
  stage_steps = ",".join(str(steps(c, e)) for e in STAGES[dataset])
  c.task.mie_stage_steps = stage_steps
  c.task.mie_mixup_alpha = 1.0
  c.task.mie_flat_ratio = 0.3
  c.optimizer.mie = dict(stage_steps=stage_steps, flat_ratio=0.0, tau=0.4,
                         collect_steps=steps(c, 1))
  return c

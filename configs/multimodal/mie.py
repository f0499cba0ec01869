"""MIE / IGM (Jiang, Chi, Yang, arXiv 2407.04587, IJCAI 2025; official njustkmg/IJCAI25-IGM):
alternating unimodal stages with flat-loss mixing and gradient projection (optim/mie.py), per-modality
heads Linear(512,256)-ReLU-Linear(256,64)-Linear(64,C), mixup Beta(1,1), prediction = mean softmax.
Official recipe: SGD lr 0.01, momentum 0.9, wd 1e-4, batch 12; stages (epochs) CREMA-D [25, 50] x 6,
Kinetics-Sounds [25, 50, 25, 50], audio first, each with a new optimizer and StepLR(40, 0.1) (so a
50-epoch stage drops its rate at epoch 40); step loss 0.7 mixup CE + 0.3 CE with the unmixed labels
(task `mie_flat_ratio`; its SAM rho 1e-10 has no effect and is left out), tau 0.4. The stages are
`config.stages`, the one place the schedule is set; input moments are collected over each stage's
last epoch (the code's extra pass over the training set uses the stage's best checkpoint).

    python -m ml_pipelines.train --config=configs/multimodal/mie.py:demo,concat --workdir=/tmp/mie
"""
from configs.multimodal.common import HEAD_GROUPS, base_config, parse, steps

STAGES = {"demo": (3, 3, 2, 2), "cremad": (25, 50) * 6, "kinetics_sounds": (25, 50, 25, 50)}
STEP_LR_EPOCHS = 40


def get_config(arg=None):
  dataset, _ = parse(arg)
  c = base_config(arg, lr=0.01, epochs=sum(STAGES[dataset]), batch_size=12, transforms=("mie",),
                  modality_heads=True, head_hidden=(256, 64), groups=HEAD_GROUPS)
  c.task.mie_mixup_alpha = 1.0
  c.task.mie_flat_ratio = 0.3
  c.task.mie_tau = 0.4
  c.task.mie_collect_steps = steps(c, 1)
  c.optimizer.mie = dict(flat_ratio=0.0)
  modalities = sorted(HEAD_GROUPS)  # audio first
  stages = []
  for i, epochs in enumerate(STAGES[dataset]):
    stage = dict(name=f"{modalities[i % 2]}{i}", steps=steps(c, epochs), reset_optimizer=True,
                 task=dict(mie_modality=modalities[i % 2]))
    if epochs > STEP_LR_EPOCHS:
      stage["optimizer"] = dict(schedule="step", decay_boundaries=(STEP_LR_EPOCHS / epochs,),
                                decay_factor=0.1)
    stages.append(stage)
  c.stages = tuple(stages)
  c.total_steps = sum(s["steps"] for s in stages)
  return c

"""G-Blending (Wang, Tran, Feiszli, CVPR 2020, Eqs. 4 and 6): `sum_k w_k L_k` over the audio, visual
and fused heads, with the weights re-estimated every super-epoch from each head's train and held-out
losses (`w_k ~ G_k / O_k^2`, normalised; ml_pipelines/tasks/multimodal.py). Equal weights until the
first two estimates exist. Training recipe as OGM-GE.

The held-out split is av_demo's `val` on the demo; on CREMA-D and Kinetics-Sounds it is a seeded 10%
carved out of the prepared training set (`data.val_fraction`, `data.val_seed`;
ml_pipelines/data/holdout.py), and training uses the other 90%: the test split is read only by the
evaluation.

    python -m ml_pipelines.train --config=configs/multimodal/gblending.py:demo,concat --workdir=/tmp/gb
"""
from configs.multimodal.common import base_config, parse, steps_per_epoch


def get_config(arg=None):
  dataset, _ = parse(arg)
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70, holdout=True,
                  task=dict(gblending_weights=(1 / 3, 1 / 3, 1 / 3)))
  super_epoch = 1 if dataset == "demo" else 10
  c.task.gblending_every = super_epoch * steps_per_epoch(c)
  c.task.gblending_val_split = "val"
  return c

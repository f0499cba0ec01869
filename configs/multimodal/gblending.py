"""G-Blending (Wang, Tran, Feiszli, CVPR 2020, Eqs. 4 and 6): `sum_k w_k L_k` over the audio, visual
and fused heads, with the weights re-estimated every super-epoch from each head's train and held-out
losses (`w_k ~ G_k / O_k^2`, normalised; ml_pipelines/tasks/multimodal.py). Equal weights until the
first two estimates exist. Training recipe as OGM-GE.

The held-out split is av_demo's `val` on the demo. CREMA-D and Kinetics-Sounds as prepared by
`ml_pipelines.prep.av` have only train and test, so the config falls back to `test` there -- prepare
a validation split and set `--config.task.gblending_val_split=val` for a clean protocol.

    python -m ml_pipelines.train --config=configs/multimodal/gblending.py:demo,concat --workdir=/tmp/gb
"""
from configs.multimodal.common import base_config, parse, steps_per_epoch


def get_config(arg=None):
  dataset, _ = parse(arg)
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70,
                  task=dict(gblending_weights=(1 / 3, 1 / 3, 1 / 3)))
  super_epoch = 1 if dataset == "demo" else 10
  c.task.gblending_every = super_epoch * steps_per_epoch(c)
  c.task.gblending_val_split = "val" if dataset == "demo" else "test"
  return c

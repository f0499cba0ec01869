"""DSA + FreeMatch (Qi2019KB/DSA `DSA_FreeMatch.py` defaults): a WRN trunk with five heads behind
structurally different adapters, FreeMatch per head, ensemble pseudo-labels.

    python -m ml_pipelines.train --config=configs/ssl/dsa_freematch.py:cifar10,40 --workdir=/tmp/dsa
    python -m ml_pipelines.train --config=configs/ssl/dsa_freematch.py:cifar100,400 --workdir=...
    python -m ml_pipelines.train --config=configs/ssl/dsa_freematch.py:digits --workdir=/tmp/dsa_d

CIFAR-10 uses WRN-28-2, CIFAR-100 WRN-28-8 (TFDS `cifar10` / `cifar100`, prepared once; labels
40/250/4000 and 400/2500/10000 in the paper's protocol). 204,800 steps of 32 + 224 images.
`--config.model.train_adapters=True` trains the expansion conv and the adapters (the paper's
reading); the default keeps them fixed random projections with noise at test time, as the code.
"""
from __future__ import annotations

import ml_collections

from configs.ssl import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset, labels = common.parse(arg)
  c, steps_per_epoch = common.base(dataset, labels)
  if dataset == "digits":
    c.model = ml_collections.ConfigDict(dict(
        name="dsa_wrn", depth=10, widen_factor=2, num_classes=10, stream_num=5,
        split_factor=0.1, adapter_widths=(64, 128, 128, 64), noise_factor=0.2,
        train_adapters=False, bn_momentum=0.9))  # a short run: faster BN running averages
    task = dict(count_thr_rampup=3, warmup_steps=30)
  else:
    _, classes, widen, _ = common.CIFAR[dataset]
    c.model = ml_collections.ConfigDict(dict(
        name="dsa_wrn", depth=28, widen_factor=widen, num_classes=classes, stream_num=5,
        split_factor=0.1, adapter_widths=(512, 1024, 1024, 512), noise_factor=0.2,
        train_adapters=False))
    task = dict(count_thr_rampup=50, warmup_steps=30)
  num_labeled = c.data.sampler.num_labeled
  c.task = ml_collections.ConfigDict(dict(
      name="freematch", steps_per_epoch=steps_per_epoch, threshold_ema=0.999, taut_alpha=0.9,
      lambda_saf=common.saf_weight(dataset, num_labeled), lambda_ens=1.0, lambda_mc=1.0,
      blank_heads=1, count_thr_min=2, count_thr_max=4, **task))
  return c

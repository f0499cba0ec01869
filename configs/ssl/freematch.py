"""Single-head FreeMatch (Wang et al. 2023), the baseline of DSA: the same recipe, data and
trainer as `dsa_freematch.py` on a plain WRN; the unlabeled loss is FreeMatch's masked CE on its own
pseudo-labels (the ensemble of one head with a count threshold of 1), the threshold scale alpha 1.

    python -m ml_pipelines.train --config=configs/ssl/freematch.py:cifar10,40 --workdir=/tmp/fm
    python -m ml_pipelines.train --config=configs/ssl/freematch.py:digits --workdir=/tmp/fm_d
"""
from __future__ import annotations

import ml_collections

from configs.ssl import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset, labels = common.parse(arg)
  c, steps_per_epoch = common.base(dataset, labels)
  if dataset == "digits":
    c.model = ml_collections.ConfigDict(dict(name="wide_resnet", depth=10, widen_factor=2,
                                             num_classes=10, bn_momentum=0.9))
  else:
    _, classes, widen, _ = common.CIFAR[dataset]
    c.model = ml_collections.ConfigDict(dict(name="wide_resnet", depth=28, widen_factor=widen,
                                             num_classes=classes))
  c.task = ml_collections.ConfigDict(dict(
      name="freematch", steps_per_epoch=steps_per_epoch, threshold_ema=0.999, taut_alpha=1.0,
      lambda_saf=common.saf_weight(dataset, c.data.sampler.num_labeled), lambda_ens=1.0,
      lambda_mc=0.0, blank_heads=0, count_thr_min=1, count_thr_max=1, warmup_steps=0))
  return c

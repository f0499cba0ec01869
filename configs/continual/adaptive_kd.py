"""Adaptively integrated KD + prediction uncertainty + exemplar CutMix (Chen, Liu, Wang, Zheng,
arXiv 2301.07316) on the class-incremental protocol; [inferred] formulation (see
ml_pipelines/tasks/continual.py `AdaptiveKD`: the paper's text was not reachable, no public code).

    python -m ml_pipelines.train --config=configs/continual/adaptive_kd.py:cifar100 \
        --workdir=/tmp/akd
    arg: digits (embedded, 5 tasks x 2, memory 40, default), cifar100 (TFDS cifar100, B50 + 5
    tasks of 10, order seed 1993, ResNet-18 at 32 px from scratch, memory 2000, herding) or
    imagenet100 (the same protocol on PODNet's ImageNet-100 at 224 px, `common.IMAGENET100_CLASSES`
    read from the ILSVRC2012 class folders under --config.data.data_dir).
    Ablations: --config.task.integration=False (block-to-block distillation),
    --config.task.uncertainty=False (fixed CE + KD + feature), --config.task.exemplar_cutmix=False.
"""
import ml_collections

from configs.continual import baselines
from configs.continual import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset = arg or "digits"
  c = baselines.get_config(f"icarl,{dataset}")
  c.task.name = "adaptive_kd"
  c.task.classifier = "linear"
  c.task.update(dict(distill=1.0, kd_temperature=2.0, integration=True, uncertainty=True,
                     exemplar_cutmix=True, cutmix_alpha=1.0, feature_weight=1.0))
  c.model.integration = True
  if dataset in ("cifar100", "imagenet100"):
    c.task.base_classes = 50
    steps = c.stages[0]["steps"]
    c = common.with_stages(c, common.task_stages(6, steps))
  return c

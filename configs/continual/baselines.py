"""The baselines of class-incremental learning on one protocol: `class_incremental` task, one head.

    python -m ml_pipelines.train --config=configs/continual/baselines.py:replay \
        --workdir=/tmp/cil_replay
    arg: METHOD[,DATASET]; METHOD one of finetune (no memory), replay (herded memory), joint (every
    seen class: the upper bound), lwf (CE on the new classes' logits + 3 x KD on
    the old ones, T = 2, no memory, as PyCIL), icarl (KD + memory +
    nearest mean of exemplars); DATASET digits (embedded, default: 5 tasks x 2 classes, memory 40),
    cifar100 (TFDS, B0-Inc10, order seed 1993, ResNet-18 at 32 px, memory 2000) or imagenet100
    (PODNet's 100 ILSVRC2012 classes, `common.IMAGENET100_CLASSES`, from the class-folder layout
    of ml_pipelines/data/continual_imagenet.py at --config.data.data_dir; B0-Inc10, order seed
    1993, ResNet-18 at 224 px from scratch, memory 2000, 90 epochs per task, SGD 0.05 cosine as
    PODNet's ImageNet-100 runs).
"""
import ml_collections

from configs.continual import common

METHODS = {
    "finetune": dict(),
    "replay": dict(memory=True),
    "joint": dict(joint=True),
    "lwf": dict(distill=3.0, new_classes_ce=True),
    "icarl": dict(memory=True, distill=1.0, classifier="nme"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  method, _, dataset = (arg or "replay").partition(",")
  dataset = dataset or "digits"
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; known: {sorted(METHODS)}.")
  spec = dict(METHODS[method])
  options = {}
  if dataset == "digits":
    c = common.run_config(batch_size=32, eval_batch_size=120)
    memory = 40
    c.task = common.digits_task("class_incremental")
    c.model = ml_collections.ConfigDict(dict(name="incremental_net",
                                             backbone=common.DIGITS_BACKBONE, num_classes=10))
    c.data = ml_collections.ConfigDict(dict(name="digits", train_split="train",
                                            eval_split="test"))
    steps, num_tasks = 60, 5
    c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=3e-3,
                                                 schedule="constant", warmup_steps=0,
                                                 weight_decay=0.0, transforms=()))
  elif dataset == "cifar100":
    c = common.run_config(batch_size=128, eval_batch_size=500, log_every=100)
    memory = 2000
    c.task = ml_collections.ConfigDict(dict(name="class_incremental", num_classes=100,
                                            class_order=1993, base_classes=0, increment=10))
    c.model = ml_collections.ConfigDict(dict(name="incremental_net", backbone=dict(
        name="resnet18"), num_classes=100))
    c.data = ml_collections.ConfigDict(dict(name="cifar100", train_split="train",
                                            eval_split="test"))
    steps, num_tasks = 170 * 50000 // 10 // 128, 10  # 170 epochs of a task's 5,000 images
    c.optimizer = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, momentum=0.9,
                                                 schedule="cosine", warmup_steps=0,
                                                 weight_decay=5e-4, weight_decay_mask="kernel$",
                                                 transforms=()))
  elif dataset == "imagenet100":
    c = common.run_config(batch_size=128, eval_batch_size=500, log_every=100)
    memory = 2000
    c.task = ml_collections.ConfigDict(dict(name="class_incremental", num_classes=100,
                                            class_order=1993, base_classes=0, increment=10))
    c.model = ml_collections.ConfigDict(dict(name="incremental_net", backbone=dict(
        name="resnet18"), num_classes=100))
    c.data = ml_collections.ConfigDict(dict(name="imagenet_subset", data_dir="", image_size=224,
                                            classes=common.IMAGENET100_CLASSES,
                                            train_split="train", eval_split="val"))
    steps, num_tasks = 90 * 130000 // 10 // 128, 10  # 90 epochs of a task's ~13,000 images
    c.optimizer = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.05, momentum=0.9,
                                                 schedule="cosine", warmup_steps=0,
                                                 weight_decay=5e-4, weight_decay_mask="kernel$",
                                                 transforms=()))
  else:
    raise ValueError(f"Unknown dataset {dataset!r}: digits, cifar100 or imagenet100.")
  if spec.pop("memory", False):
    options["memory_size"] = memory
  options.update(spec)
  c.task.update(options)
  return common.with_stages(c, common.task_stages(num_tasks, steps))

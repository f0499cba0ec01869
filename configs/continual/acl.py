"""ACL: adapters in a frozen pretrained extractor, task heads with "others" (MICCAI 2023,
arXiv 2304.09042; official code GiantJun/CL_Pytorch, options/multi_steps/acl/*.yaml).

    python -m ml_pipelines.train --config=configs/continual/acl.py:cifar100 --workdir=/tmp/acl \
        --config.init_from.path=resnet18.tv_in1k.safetensors
    arg: digits (embedded: 5 tasks x 2, memory 40, staged CNN; the demo pretrains it on rotated
    digits), digits_frozen_heads (the same without adapters: frozen extractor + per-task heads),
    cifar100 (TFDS cifar100, B0-Inc10, order seed 1993, ResNet-18 at 224 px, memory 2000),
    skin8 (ISIC 2019 images + the official list files, 4 tasks of 2, memory 40; MobileNetV2 as
    the official config, adapters before features.3, .5, .12, .15; weights: torchvision's
    MobileNet_V2_Weights.IMAGENET1K_V1 state dict), path16 (7 pathology sets as 7 tasks, memory
    80).

Per task: phase "adapters" (SGD lr 0.01, momentum 0.9, wd 5e-4, 200 epochs, x0.1 at epochs 70,
130, 170, batch 32; trainable: the newest adapters and the aux head, frozen BNs on running
statistics) and, from task 1 on, phase "heads" (Adam lr 1e-3, no weight decay; CIFAR-100 50
epochs x0.1 at 15 and 35, Skin8 / Path16 100 epochs x0.1 at 55 and 80; trainable: every head).
The pretrained ResNet-18 (torchvision IMAGENET1K_V1 = timm resnet18.tv_in1k) or MobileNetV2
(skin8) is loaded with `init_from` (converter `torchvision_resnet_backbone` /
`torchvision_mobilenet_v2_backbone`; heads and adapters keep their initialisation, the file's
fc / classifier is unused).
"""
import ml_collections

from configs.continual import common

DATASETS = {
    # name: (num_classes, class order, increment, memory, images per task, adapter / head epochs
    #        and milestones)
    "cifar100": dict(num_classes=100, order=1993, increment=10, memory=2000, task_images=5000,
                     epochs=200, head_epochs=50, head_milestones=(15, 35)),
    "skin8": dict(num_classes=8, order=None, increment=2, memory=40, task_images=3555 // 4,
                  epochs=200, head_epochs=100, head_milestones=(55, 80)),
    "path16": dict(num_classes=16, order=None, increment=None, memory=80, task_images=1600,
                   epochs=200, head_epochs=100, head_milestones=(55, 80)),
}
PATH16_TASKS = (2, 2, 2, 2, 4, 2, 2)  # MHIST, breast, oral, PCam, TCGA_STD, lung, colon


def _phases(t, adapter_steps, head_steps, adapter_opt, head_opt, adapters: bool):
  newest = r"^(heads/0/)" if t == 0 else rf"^(aux/{t - 1}/)"
  if adapters:
    newest = newest[:-1] + rf"|adapters/\d+/{t}/)"
  rows = [("adapters", adapter_steps, dict(task=dict(phase="adapters"), trainable=newest,
                                           optimizer=adapter_opt))]
  if t > 0:
    heads = "|".join(str(i) for i in range(t + 1))
    rows.append(("heads", head_steps, dict(task=dict(phase="heads"),
                                           trainable=rf"^heads/({heads})/", optimizer=head_opt)))
  return rows


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  name = arg or "digits"
  if name in ("digits", "digits_frozen_heads"):
    c = common.run_config(batch_size=32, eval_batch_size=120)
    c.task = common.digits_task("acl", memory_size=40, phase="adapters")
    sizes, hooks = [2] * 5, (() if name == "digits_frozen_heads" else (0, 1, 2))
    c.model = ml_collections.ConfigDict(dict(name="acl_net", backbone=common.DIGITS_BACKBONE,
                                             task_sizes=sizes, hooks=hooks))
    c.data = ml_collections.ConfigDict(dict(name="digits", train_split="train",
                                            eval_split="test"))
    adapter_steps, head_steps = 60, 60
    adapter_opt = dict(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=5e-4,
                       schedule="step", decay_boundaries=(0.6,))
    head_opt = dict(name="adam", learning_rate=1e-2, weight_decay=0.0, schedule="constant")
  else:
    d = DATASETS[name]
    sizes = list(PATH16_TASKS) if name == "path16" else [d["increment"]] * (
        d["num_classes"] // d["increment"])
    c = common.run_config(batch_size=32, eval_batch_size=256, log_every=100)
    c.task = ml_collections.ConfigDict(dict(
        name="acl", num_classes=d["num_classes"], class_order=d["order"], base_classes=sizes[0],
        increment=sizes[1], memory_size=d["memory"], phase="adapters"))
    hooks = (0, 1, 2, 3)  # ResNet-18: layer1..4; MobileNetV2: features.3, .5, .12, .15
    backbone = dict(name="mobilenet_v2") if name == "skin8" else dict(name="resnet18")
    c.model = ml_collections.ConfigDict(dict(name="acl_net", backbone=backbone,
                                             task_sizes=sizes, hooks=hooks))
    c.data = ml_collections.ConfigDict(dict(
        name={"cifar100": "cifar100_224", "skin8": "skin8", "path16": "path16"}[name],
        train_split="train", eval_split="test", data_dir=""))
    per_epoch = d["task_images"] // c.batch_size
    adapter_steps = d["epochs"] * per_epoch
    head_steps = d["head_epochs"] * per_epoch  # the balanced set is smaller; same epoch count
    adapter_opt = dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=5e-4,
                       schedule="step", decay_boundaries=(70 / 200, 130 / 200, 170 / 200))
    head_opt = dict(name="adam", learning_rate=1e-3, weight_decay=0.0, schedule="step",
                    decay_boundaries=tuple(m / d["head_epochs"] for m in d["head_milestones"]))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=5e-4, schedule="constant",
      warmup_steps=0, freeze_batch_stats=True, transforms=()))
  converter = {"skin8": "torchvision_mobilenet_v2_backbone"}.get(name,
                                                                   "torchvision_resnet_backbone")
  c.init_from = ml_collections.ConfigDict(dict(
      path="", converter="ours" if name.startswith("digits") else converter,
      skip=r"^(adapters|heads|aux)/", strict=False))
  stages = common.task_stages(len(sizes), 0, phases=lambda t: _phases(
      t, adapter_steps, head_steps, adapter_opt, head_opt, bool(hooks)))
  return common.with_stages(c, stages)

"""Shared builder of the deep-hashing configs: `get_config("dataset,bits")` in each method file.

Datasets (first argument): `digits` (embedded demo, tiny backbone), `cifar10` (ADSH protocol),
`cub` (CUB-200-2011), `nus_wide`, `coco`, `market1501`, `duke`, `cuhk03` (prepared records under
`data_dir`, see `python -m ml_pipelines.prep.hashing --help`). Paper-scale defaults are the official
training scripts' where there is one (ADSH: jiangqy/ADSH-AAAI2018 `ADSH_pytorch/ADSH_CIFAR_10.py`;
SEMICON: aassxun/SEMICON `SEMICON_train.py`), else the papers' or ours, as each config's docstring
says; `digits` is sized to train in seconds on a CPU.

Paper-scale runs start, as the papers do, from torchvision's ImageNet ResNet-50 (IMAGENET1K_V1,
https://download.pytorch.org/models/resnet50-0676ba61.pth), read from `init_from.path` (default
data/pretrained/resnet50-0676ba61.pth; elsewhere: `--config.init_from.path=FILE`; from scratch:
`--config.init_from.path=''`): the trunk and every full-width layer4 copy load it, the method's own
layers keep their initialisation (`skip`), and the unused ImageNet classifier `fc.*` is named in one
warning (`strict=False`).
"""
import ml_collections

DATASETS = {  # name: (data block, image size, classes, eval topk)
    "digits": (dict(name="digits_retrieval"), 8, 10, None),
    "cifar10": (dict(name="cifar10_retrieval"), 32, 10, None),
    "cub": (dict(name="cub_retrieval", image_size=224), 224, 200, None),
    "nus_wide": (dict(name="hashing_records", data_dir="data/nus_wide", image_size=224), 224, 21,
                 5000),
    "coco": (dict(name="hashing_records", data_dir="data/coco", image_size=224), 224, 80, 5000),
    "market1501": (dict(name="hashing_records", data_dir="data/market1501", image_size=224), 224,
                   751, None),
    "duke": (dict(name="hashing_records", data_dir="data/duke", image_size=224), 224, 702, None),
    "cuhk03": (dict(name="hashing_records", data_dir="data/cuhk03", image_size=224), 224, 767,
               None),
}


def parse(arg):
  """'dataset,bits' -> (dataset, bits); defaults 'digits,12'."""
  parts = (arg or "digits,12").split(",")
  dataset = parts[0] or "digits"
  bits = int(parts[1]) if len(parts) > 1 else 12
  if dataset not in DATASETS:
    raise ValueError(f"Unknown hashing dataset {dataset!r}; known: {sorted(DATASETS)}.")
  return dataset, bits


def base_config(arg, *, model: dict, task: dict, lr: float, momentum: float, weight_decay: float,
                batch_size: int, nesterov: bool = False, steps_per_outer: int = 94,
                outer_iterations: int = 50):
  """The common structure; `model`/`task` hold the method's entries (bits and backbone are set here)."""
  dataset, bits = parse(arg)
  data, size, classes, topk = DATASETS[dataset]
  demo = dataset == "digits"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 32 if demo else batch_size
  c.eval_batch_size = 128 if demo else 256
  outer = 8 if demo else steps_per_outer
  c.total_steps = outer * (12 if demo else outer_iterations)
  c.log_every = outer
  c.eval_every = c.total_steps
  c.checkpoint_every = outer * (4 if demo else 5)
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  m = dict(model, bits=bits, backbone="tiny" if demo else "resnet50",
           in_channels=1 if demo else 3)
  if demo:
    m["width"] = 16
  c.model = ml_collections.ConfigDict(m)
  c.task = ml_collections.ConfigDict(dict(task, outer_steps=outer, topk=topk))
  c.data = ml_collections.ConfigDict(dict(data, train_split="database", eval_split="query"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=3e-2 if demo else lr, schedule="constant", warmup_steps=0,
      momentum=0.9 if demo else momentum, nesterov=nesterov, weight_decay=weight_decay,
      weight_decay_mask="kernel$", clip_grad_norm=0.0, transforms=()))
  if not demo:
    c.init_from = ml_collections.ConfigDict(dict(
        path="data/pretrained/resnet50-0676ba61.pth", converter="torchvision_resnet",
        skip=r"^(?!trunk/|layer4/|global_stage/|local_stage/)", strict=False))
  return c

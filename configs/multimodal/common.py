"""Shared builder of the audio-visual imbalance configs: `get_config("dataset,fusion")` in each method.

Datasets: `demo` (synthetic `av_demo`, tiny `av_small` model, trains in seconds on a CPU), `cremad`
(CREMA-D, 6 classes, 257x188 spectrograms, 1 frame) and `kinetics_sounds` (31 classes, 3 frames),
both prepared with `python -m ml_pipelines.prep.av` into `data_dir`. Fusions: sum, concat, film,
gated (the four heads of OGM-GE, Peng et al., CVPR 2022, Sec. 4.1; official code
GeWu-Lab/OGM-GE_CVPR2022, models/fusion_modules.py). Paper schedules are in epochs; `steps(epochs)`
converts with the dataset's steps per epoch (floor(N_train / batch), drop_last, as the official
loaders). The shared recipe is OGM-GE's (main.py of that repository: SGD lr 1e-3, momentum 0.9,
weight decay 1e-4, StepLR(70, 0.1), 100 epochs, batch 64); each method's config cites its own paper
and repository for what differs.

`holdout=True` sets the data options `val_fraction=0.1, val_seed=0` on CREMA-D and Kinetics-Sounds:
split `val` is a seeded 10% of the prepared training set and `train` the rest (so steps per epoch
count the rest), for methods that estimate weights on held-out data (G-Blending); the test split
never reaches training. av_demo draws its own `val` split.
"""
import ml_collections

from models import audiovisual

DATASETS = {  # name: (data block, classes, train size)
    "demo": (dict(name="av_demo"), 10, 2000),
    "cremad": (dict(name="crema_d", data_dir="data/crema_d"), 6, 6698),
    "kinetics_sounds": (dict(name="kinetics_sounds", data_dir="data/kinetics_sounds"), 31, 15000),
}
GROUPS = audiovisual.PARAM_GROUPS
VAL_FRACTION = 0.1  # of the training set held out as `val` with holdout=True
HEAD_GROUPS = audiovisual.HEAD_PARAM_GROUPS


def parse(arg):
  """'dataset,fusion' -> (dataset, fusion); defaults 'demo,concat'."""
  parts = (arg or "demo,concat").split(",")
  dataset = parts[0] or "demo"
  fusion = parts[1] if len(parts) > 1 and parts[1] else "concat"
  if dataset not in DATASETS:
    raise ValueError(f"Unknown audio-visual dataset {dataset!r}; known: {sorted(DATASETS)}.")
  return dataset, fusion


def base_config(arg, *, lr: float, epochs: int, batch_size: int = 64, momentum: float = 0.9,
                weight_decay: float = 1e-4, weight_decay_mask: str | None = None,
                step_epochs: int | None = None, task=None, transforms=(),
                modality_heads: bool = False, head_hidden=(), activation: str = "relu",
                groups=GROUPS, holdout: bool = False):
  """SGD(lr, momentum, wd) for `epochs`, StepLR(step_epochs, 0.1); the demo runs 10 short epochs
  at lr 0.01 for every method so they compare at equal cost."""
  dataset, fusion = parse(arg)
  data, classes, _ = DATASETS[dataset]
  demo = dataset == "demo"
  if holdout and not demo:
    data = dict(data, val_fraction=VAL_FRACTION, val_seed=0)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 64 if demo else batch_size
  c.eval_batch_size = 250 if demo else 64
  c.data = ml_collections.ConfigDict(dict(data, train_split="train", eval_split="test"))
  spe = steps_per_epoch(c)
  if demo:
    epochs, lr, step_epochs = 10, 0.01, None
  c.total_steps = epochs * spe
  c.log_every = spe
  c.eval_every = spe if demo else 5 * spe
  c.checkpoint_every = c.total_steps if demo else 5 * spe
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  model = dict(name="av_small" if demo else "av_resnet18", num_classes=classes, fusion=fusion,
               modality_heads=modality_heads, head_hidden=tuple(head_hidden),
               activation=activation)
  c.model = ml_collections.ConfigDict(model)
  c.task = ml_collections.ConfigDict(dict(name="multimodal", mute_modality="", **(task or {})))
  opt = dict(name="sgd", learning_rate=lr, momentum=momentum, weight_decay=weight_decay,
             weight_decay_mask=weight_decay_mask, schedule="constant", warmup_steps=0,
             param_groups=dict(groups), transforms=tuple(transforms))
  if step_epochs:
    opt.update(schedule="step", decay_boundaries=(step_epochs / epochs,), decay_factor=0.1)
  c.optimizer = ml_collections.ConfigDict(opt)
  return c


def steps_per_epoch(c) -> int:
  """floor(N_train / batch) of config `c` (drop_last, as the official loaders); N_train excludes a
  held-out `val` carved out of the training set."""
  n_train = {d["name"]: n for d, _, n in DATASETS.values()}[c.data.name]
  n_train -= int(round(c.data.get("val_fraction", 0.0) * n_train))
  return n_train // c.batch_size


def steps(c, epochs: float) -> int:
  """Epochs -> steps of config `c`."""
  return int(epochs * steps_per_epoch(c))

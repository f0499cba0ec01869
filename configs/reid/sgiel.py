"""SGIEL (Feng et al., CVPR 2023, arXiv 2304.04205; official jiawei151/SGIEL_VIReID `train.py`,
`run.sh`): shape-erased visible-infrared re-ID.

    python -m ml_pipelines.train --config=configs/reid/sgiel.py:synthetic --workdir=/tmp/sgiel

Argument `dataset[,baseline][,key=value...]`: `synthetic` (embedded two-spectrum identities,
CPU-sized model), `sysu` (SYSU-MM01, `data_dir` / `shape_dir`; evaluated on the mean of the 10
standard gallery trials, `search_mode=all|indoor`), `regdb` (RegDB; `trial=1..10` picks the
train/test split, `direction=t2v|v2t`; the protocol's figure is the mean of the 10 split runs:
`python -m ml_pipelines.jobs.reid_trials WORKDIR...`); `,baseline` trains the plain two-stream
model with L_id + L_tri + L_kl only.

Official settings kept: 8 identities x 4 pairs per batch, 288 x 144 inputs, ResNet-50 with layer4
stride 1, triplet margin 0.3, CutMix probability 0.2, SGD momentum 0.9 Nesterov, weight decay 5e-4,
gradient clipping 11, 120 epochs, EMA rates by epoch; the code's two learning rates (`train.py`):
0.1 for the classifiers, BNNecks and projections P, P_s (`optimizer.param_groups["heads"]` with
`group_optimizers`), 0.01 for the stems and the shared ResNet; 10 warm-up epochs, then x0.1 at
epochs 20 and 85; the gradient clip acts on the norm of all parameters together, as the code's.
Difference: the warm-up is linear per step (the code's is per epoch). ImageNet
weights through `init_from` (converter `torchvision_resnet_sgiel`: both stems and every BN copy
from torchvision's, the infrared / shape copies' running statistics left at their defaults as the
code's `init_bn`): give `resnet50-19c8e357.pth` with `--config.init_from.path=FILE`, else the run
starts from scratch. The embedded `synthetic` run keeps one rate (0.05, cosine) for
every parameter, as its demo table was made.
"""
import ml_collections

DATASETS = {  # name: (data block, ids, image (H, W), steps per epoch, epochs)
    # the embedded identities' colour is an identity cue the channel exchange would hide half the
    # time; the demo table was made with pad / crop / flip only
    "synthetic": (dict(name="two_spectrum", train_split="train", eval_split="test",
                       channel_augment=False), 40, (32, 16), 10, 30),
    "sysu": (dict(name="sysu_mm01", train_split="train", eval_split="test",
                  data_dir="data/SYSU-MM01", shape_dir="data/SYSU-MM01-shape"), 395, (288, 144),
             22258 // 32, 120),
    "regdb": (dict(name="regdb", train_split="train", eval_split="test", data_dir="data/RegDB",
                   shape_dir="data/RegDB-shape"), 206, (288, 144), 2060 // 32, 120),
}
# the layers the code trains at the full rate: classifiers, BNNecks, shape projections
HEADS = r"^(classifier|bottleneck|proj)"
# not in an ImageNet ResNet: those layers, and the running statistics of the infrared / shape BNs
IMAGENET_SKIP = HEADS + r"|(_ir|_shape)/(mean|var)$"
SWITCHES = {"sysu": {"search_mode": ("all", "indoor")},
            "regdb": {"trial": tuple(str(t) for t in range(1, 11)), "direction": ("t2v", "v2t")}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "synthetic").split(",")
  dataset, baseline = parts[0], "baseline" in parts[1:]
  if dataset not in DATASETS:
    raise ValueError(f"sgiel config: dataset in {sorted(DATASETS)}, got {arg!r}")
  data, ids, _, steps_per_epoch, epochs = DATASETS[dataset]
  data = dict(data)
  for part in parts[1:]:
    if part == "baseline":
      continue
    key, _, value = part.partition("=")
    allowed = SWITCHES.get(dataset, {})
    if value not in allowed.get(key, ()):
      raise ValueError(f"sgiel config: {part!r} is not a switch of {dataset!r} (allowed: "
                       f"{allowed})")
    data[key] = int(value) if key == "trial" else value
  demo = dataset == "synthetic"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = steps_per_epoch * epochs
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every = 50
  c.eval_every = c.total_steps
  c.checkpoint_every = 100 if demo else 5 * steps_per_epoch
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.model = ml_collections.ConfigDict(dict(
      name="sgiel", num_classes=ids, depths=(1, 1, 1, 1) if demo else (3, 4, 6, 3),
      width=16 if demo else 64, last_stride=1))
  c.task = ml_collections.ConfigDict(dict(
      name="sgiel", margin=0.3, cutmix_prob=0.2, steps_per_epoch=steps_per_epoch,
      baseline=baseline, protocol="sysu" if dataset == "sysu" else "standard"))
  c.data = ml_collections.ConfigDict(dict(data, sampler={"name": "pk", "k": 4, "label": "label"}))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, schedule="cosine",
      warmup_steps=20, weight_decay=5e-4, weight_decay_mask="kernel$|proj", clip_grad_norm=11.0,
      transforms=()))
  if not demo:
    c.init_from = ml_collections.ConfigDict(dict(
        path="", converter="torchvision_resnet_sgiel", skip=IMAGENET_SKIP))
    c.optimizer.update(
        learning_rate=0.01, schedule="step", warmup_steps=10 * steps_per_epoch,
        decay_boundaries=(20 / epochs, 85 / epochs), decay_factor=0.1,
        param_groups={"heads": HEADS}, group_optimizers={"heads": {"learning_rate": 0.1}})
  return c

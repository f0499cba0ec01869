"""SGIEL (Feng et al., CVPR 2023, arXiv 2304.04205; official jiawei151/SGIEL_VIReID `train.py`,
`run.sh`): shape-erased visible-infrared re-ID.

    python -m ml_pipelines.train --config=configs/reid/sgiel.py:synthetic --workdir=/tmp/sgiel

Argument `dataset[,baseline]`: `synthetic` (embedded two-spectrum identities, CPU-sized model),
`sysu` (SYSU-MM01, `data_dir` / `shape_dir`); `,baseline` trains the plain two-stream model with
L_id + L_tri + L_kl only.

Official settings kept: 8 identities x 4 pairs per batch, 288 x 144 inputs, ResNet-50 with layer4
stride 1, triplet margin 0.3, CutMix probability 0.2, SGD momentum 0.9 Nesterov, weight decay 5e-4,
gradient clipping 11, 120 epochs, EMA rates by epoch. Differences: one learning rate for all
parameters (the code uses 0.1 for heads / necks / projections and 0.01 for the backbone) with a
cosine schedule instead of the code's warm-up + steps; ImageNet weights through `init_from`
(`converter="torchvision_resnet_sgiel"`, file not downloadable here, so the default starts from
scratch).
"""
import ml_collections

DATASETS = {  # name: (data block, ids, image (H, W), steps per epoch, epochs)
    "synthetic": (dict(name="two_spectrum", train_split="train", eval_split="test"), 40,
                  (32, 16), 10, 30),
    "sysu": (dict(name="sysu_mm01", train_split="train", eval_split="test",
                  data_dir="data/SYSU-MM01", shape_dir="data/SYSU-MM01-shape"), 395, (288, 144),
             22258 // 32, 120),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "synthetic").split(",")
  dataset, baseline = parts[0], "baseline" in parts[1:]
  if dataset not in DATASETS:
    raise ValueError(f"sgiel config: dataset in {sorted(DATASETS)}, got {arg!r}")
  data, ids, _, steps_per_epoch, epochs = DATASETS[dataset]
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
      baseline=baseline, protocol="standard" if demo else "sysu"))
  c.data = ml_collections.ConfigDict(dict(data, sampler={"name": "pk", "k": 4, "label": "label"}))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.05 if demo else 0.1, momentum=0.9, nesterov=True,
      schedule="cosine", warmup_steps=20 if demo else 10 * steps_per_epoch, weight_decay=5e-4,
      weight_decay_mask="kernel$|proj", clip_grad_norm=11.0, transforms=()))
  return c

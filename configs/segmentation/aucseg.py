"""AUCSeg (Han et al., NeurIPS 2024, arXiv 2409.20398; official boyuh/AUCSeg `aucseg_configs/`):
cross-entropy + pixel-level AUC loss + T-Memory Bank on an encoder-decoder segmenter.

    python -m ml_pipelines.train --config=configs/segmentation/aucseg.py:digits \
        --workdir=/tmp/aucseg
    python -m ml_pipelines.train --config=configs/segmentation/aucseg.py:ade20k \
        --workdir=workdirs/aucseg_ade --config.data.data_dir=data/ADEChallengeData2016

Argument `dataset[,variant][,ham]`: dataset `digits` (embedded long-tailed digit scenes,
CPU-sized), `ade20k`, `cityscapes`, `coco_stuff164k` (see `ml_pipelines/data/segmentation.py` for
the layouts); variant `ce` (cross-entropy only), `auc` (CE + AUC loss) or `aucseg` (CE + AUC +
bank, default); `ham`: SegNeXt's LightHamHead decoder (NMF Hamburger on stages 2-4, SegNeXt-L's
1024 channels, rank 16, GroupNorm 32) instead of the SegFormer all-MLP head.

Official settings kept: AUC weight 4 (ADE20K) / 1 (Cityscapes, COCO-Stuff), square surrogate, ovo;
bank memory 5 with the official tail lists, p_sample / p_resize 0.05 / 0.4 (ADE20K), 1 / 1
(Cityscapes), 0.05 / 0.1 (COCO-Stuff); crops 512 / 1024 / 512; batch 4 / 2 / 4; 160k / 160k / 80k
iterations; AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (not on norms and biases), 1500
warm-up steps; whole-image testing, sliding 1024 windows at stride 768 on Cityscapes.
Differences: the model is our ResNet-50 + SegFormer all-MLP head (not SegNeXt-L's MSCAN-L +
LightHamHead; ImageNet weights through `init_from`, converter `torchvision_resnet_segmenter`, skip
`^head/`: give torchvision's `resnet50-19c8e357.pth` with `--config.init_from.path=FILE`, else
the run starts from scratch); the
schedule is cosine (the official poly-1 decay is not among the trainer's schedules). The decode
head trains at x10 the rate (mmseg `paramwise_cfg` `head: lr_mult=10`, as
`optimizer.param_groups["head"]` with `group_optimizers`; AdamW's decoupled decay scales with it as
in PyTorch); the embedded `digits` run keeps one rate, as its demo table was made.
"""
import ml_collections

from ml_pipelines.data import segmentation_bank as sb

DATASETS = {  # name: (data block, classes, crop, batch, steps, auc weight, inference)
    "digits": (dict(name="digit_scenes", train_split="train", eval_split="test"), 11, (48, 48),
               16, 500, 1.0, "whole"),
    "ade20k": (dict(name="ade20k", train_split="train", eval_split="validation",
                    data_dir="data/ADEChallengeData2016"), 150, (512, 512), 4, 160_000, 4.0,
               "whole"),
    "cityscapes": (dict(name="cityscapes", train_split="train", eval_split="validation",
                        data_dir="data/cityscapes"), 19, (1024, 1024), 2, 160_000, 1.0, "slide"),
    "coco_stuff164k": (dict(name="coco_stuff164k", train_split="train", eval_split="validation",
                            data_dir="data/coco_stuff164k"), 171, (512, 512), 4, 80_000, 1.0,
                       "whole"),
}
VARIANTS = ("ce", "auc", "aucseg")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "digits").split(",")
  dataset, variant = parts[0], parts[1] if len(parts) > 1 else "aucseg"
  ham = parts[2:] == ["ham"]
  if dataset not in DATASETS or variant not in VARIANTS or parts[2:] not in ([], ["ham"]):
    raise ValueError(f"aucseg config: dataset in {sorted(DATASETS)}, variant in {VARIANTS}, then "
                     f"optionally 'ham'; got {arg!r}")
  data, classes, crop, batch, steps, auc_weight, inference = DATASETS[dataset]
  demo = dataset == "digits"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = steps
  c.batch_size = batch
  c.eval_batch_size = 32 if demo else 2
  c.log_every = 50
  c.eval_every = steps if demo else 16_000
  c.checkpoint_every = 100 if demo else 4000
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  backbone = dict(name="resnet18", width=16) if demo else dict(name="resnet50")
  c.model = ml_collections.ConfigDict(dict(
      name="segmenter", backbone=backbone, num_classes=classes, channels=64 if demo else 256,
      in_index=(0, 1, 2, 3), dropout=0.1))
  if ham:
    channels = 64 if demo else 1024
    c.model.update(head="ham", in_index=(1, 2, 3), channels=channels,
                   ham=dict(ham_channels=channels, rank=16, num_groups=32))
  c.task = ml_collections.ConfigDict(dict(
      name="segmentation", auc_weight=0.0 if variant == "ce" else auc_weight,
      auc_surrogate="square", auc_transform="ovo", inference=inference,
      crop_size=(1024, 1024) if dataset == "cityscapes" else crop,
      stride=(768, 768) if dataset == "cityscapes" else crop))
  if variant == "aucseg":
    # digits: one paste per image (ceil(0.3 x 3 absent tail classes)) at half size, anywhere
    settings = dict(p_sample=0.3, p_resize=0.5) if demo else sb.BANK_SETTINGS[dataset]
    c.task.bank = dict(tail=list(data_tail(dataset)), memory_size=5, **settings)
  c.data = ml_collections.ConfigDict(dict(data, crop_size=crop) if not demo else data)
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=3e-3 if demo else 6e-5, b1=0.9, b2=0.999, schedule="cosine",
      warmup_steps=20 if demo else 1500, weight_decay=0.01, weight_decay_mask="kernel$",
      clip_grad_norm=0.0, transforms=()))
  if not demo:
    c.init_from = ml_collections.ConfigDict(dict(
        path="", converter="torchvision_resnet_segmenter", skip=r"^head/"))
    c.optimizer.param_groups = {"head": r"^head/"}
    c.optimizer.group_optimizers = {"head": {"learning_rate": 10 * c.optimizer.learning_rate}}
  return c


def data_tail(dataset: str):
  from ml_pipelines.data.segmentation import DIGIT_SCENES_TAIL
  return DIGIT_SCENES_TAIL if dataset == "digits" else sb.TAIL_CLASSES[dataset]

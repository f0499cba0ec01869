"""Heads on diffusion features: label-scarce pixel segmentation with the GATE aggregator over
feature variants (Meng et al. 2024, "Suppress Content Shift") or the plain DDPM-segmentation
ensemble, and the GATE correspondence aggregator on SPair-71k.

1. One extraction per variant and split (`ml_pipelines/jobs/diffusion_features.py`,
   `configs/diffusion/features.py`: plain, fine-grained prompt, ControlNet-canny with
   `denoising_from=60`, LoRA), e.g. `--out=/feats/horse21/plain --config.images_dir=.../real/train`.
2. The head:

    python -m ml_pipelines.train --config=configs/diffusion/gate.py:horse21 --workdir=/tmp/gate \
        --config.data.feature_dirs="('/feats/h21/plain','/feats/h21/prompt','/feats/h21/canny')"
    python -m ml_pipelines.train --config=configs/diffusion/gate.py:spair --workdir=/tmp/spair \
        --config.data.images_dir=/data/SPair-71k/JPEGImages \
        --config.data.feature_dirs="('/feats/spair/plain','/feats/spair/seed1')" \
        --config.data.train_pairs=spair_71k_train.json \
        --config.data.eval_pairs=spair_71k_val-360.json

The paper's label-scarce numbers average five runs, each on a pooled and reshuffled train / test
split (the GATE code's `--shuffle_dataset`): `--config.data.pool_seed=1` ... `=5`, one workdir each.

Arguments: `horse21` / `bedroom28` / `ffhq34` / `cat15` / `celeba19` (GATE; `dim` 3674: `practical`
3520 + 154 `up_cross` attention channels), `<dataset>_plain` (the ensemble on one variant),
`tiny:<dim>,<variants>` (tests), `spair` (AdamW 5e-4, wd 0.01, 2 x 5,000 pairs, one pair per step,
PCK@0.1 every 500 steps on the 360 validation pairs; the paper reports the best validation),
`spair_tiny:<dim>,<attn>` (tests), `ade20k` / `cityscapes` (semantic segmentation below),
`seg_tiny:<classes>` (tests).

Semantic segmentation (the released `segmentation/configs/gate_{ade,city}.py`): three variants,
plain, LoRA-a + canny, LoRA-b + canny, each one extraction directory holding both splits
(`configs/diffusion/features.py:ade20k_legacy`, whose taps include the three upsampler outputs used
here, with the dataset's released prompt); the masks come from `ml_pipelines/data/segmentation.py`
(the mmseg directory layout):

    python -m ml_pipelines.jobs.diffusion_features \
        --config=configs/diffusion/features.py:ade20k_legacy --out=/feats/ade/plain \
        --config.split=train --config.weights_dir=/models/sd15 \
        --config.images_dir=/data/ADEChallengeData2016/images/training
    (again with --config.split=validation and images/validation; again per variant with
     --config.lora=... --config.controlnet_dir=/models/sd-controlnet-canny
     --config.denoising_from=60)
    python -m ml_pipelines.train --config=configs/diffusion/gate.py:ade20k --workdir=/tmp/gate_ade \
        --config.data.data_dir=/data/ADEChallengeData2016 \
        --config.data.feature_dirs="('/feats/ade/plain','/feats/ade/lora_a','/feats/ade/lora_b')"

The model is the released `DiffusionSegmentor` (variants concatenated per level);
`--config.model.fusion=gate` is the weighted `DiffusionGateSegmentor`. Differences from the
released recipe: features are extracted once per image, the image resized whole to 512 (no random
scale/crop/flip, which would need on-the-fly extraction), and mIoU is measured at 512 x 512 on the
whole-image-resized masks (not slide inference at the original size).
"""
import ml_collections

CLASSES = {"horse21": 21, "bedroom28": 28, "ffhq34": 34, "cat15": 15, "celeba19": 19}


def spair(rest: str) -> ml_collections.ConfigDict:
  tiny = bool(rest)
  dim, attn = (int(v) for v in rest.split(",")) if tiny else (2880, 154)
  steps = 30 if tiny else 10000
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = steps
  c.batch_size = 1
  c.eval_batch_size = 1
  c.log_every = 10 if tiny else 100
  c.eval_every = steps if tiny else 500
  c.checkpoint_every = 0 if tiny else 500
  c.keep_checkpoints = 1
  c.keep_period = 0
  # one pair per step as released (on N devices: --config.batch_size=N pairs)
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.model = ml_collections.ConfigDict(dict(name="gate_correspondence", dim=dim, attn_dim=attn))
  c.task = ml_collections.ConfigDict(dict(name="gate_correspondence",
                                          load_size=16 if tiny else 512, alpha=0.1))
  c.data = ml_collections.ConfigDict(dict(
      name="spair_pairs", train_split="train", eval_split="test", images_dir="", feature_dirs=(),
      train_pairs="", eval_pairs="", output_size=8 if tiny else 64, load_size=16 if tiny else 512,
      max_points=20))
  c.optimizer = ml_collections.ConfigDict(dict(name="adamw", learning_rate=5e-4,
                                               schedule="constant", warmup_steps=0,
                                               weight_decay=0.01, transforms=()))
  return c


SEGMENTATION_CLASSES = {"ade20k": 150, "cityscapes": 19}
UPSAMPLER_LEVELS = (("up-level0-upsampler-out",), ("up-level1-upsampler-out",),
                    ("up-level2-upsampler-out",))


def segmentation(name: str, rest: str) -> ml_collections.ConfigDict:
  """UPerNet (512 channels, pool scales 1/2/3, dropout 0.1) + FCN auxiliary (0.4) on three
  variants' upsampler outputs (1280 / 1280 / 640 channels at 16 / 32 / 64 for 512 px), CE +
  Lovasz, AdamW 1.6e-4, wd 1e-3, poly (0.9, down to 1e-4), 80k iterations of batch 2."""
  tiny = name == "seg_tiny"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 16 if tiny else 80000
  c.batch_size = 8 if tiny else 2  # tests run on 8 CPU devices
  c.eval_batch_size = c.batch_size
  c.log_every = 4 if tiny else 50
  c.eval_every = c.total_steps if tiny else 8000
  c.checkpoint_every = 0 if tiny else 8000  # tests skip checkpoints
  c.keep_checkpoints = 1
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  classes = int(rest) if tiny else SEGMENTATION_CLASSES[name]
  c.model = ml_collections.ConfigDict(dict(
      name="diffusion_segmentor", num_classes=classes,
      layer_dims=((4,), (4,), (2,)) if tiny else ((1280,), (1280,), (640,)), variants=3,
      fusion="concat", channels=8 if tiny else 512, pool_scales=(1, 2, 3), dropout=0.1,
      aux_level=1))
  c.task = ml_collections.ConfigDict(dict(name="diffusion_segmentation", num_classes=classes,
                                          aux_weight=0.4, lovasz_weight=1.0, ignore_index=255))
  c.data = ml_collections.ConfigDict(dict(
      name="diffusion_segmentation", dataset="ade20k" if tiny else name, data_dir="",
      feature_dirs=(), levels=UPSAMPLER_LEVELS, label_size=16 if tiny else 512,
      train_split="train", eval_split="validation"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-2 if tiny else 1.6e-4, schedule="poly", power=0.9,
      end_factor=1e-4 / 1.6e-4, warmup_steps=0, weight_decay=1e-3, transforms=()))
  return c


def get_config(arg: str = "horse21") -> ml_collections.ConfigDict:
  name, _, rest = arg.partition(":")
  if name in ("spair", "spair_tiny"):
    return spair(rest)
  if name in ("ade20k", "cityscapes", "seg_tiny"):
    return segmentation(name, rest)
  plain = name.endswith("_plain")
  dataset = name.removesuffix("_plain")
  if dataset == "tiny":
    dim, variants = (int(v) for v in rest.split(","))
    classes, label_size, steps = 4, 8, 200
  else:
    dim, variants, classes = 3674, 1 if plain else 4, CLASSES[dataset]
    label_size, steps = 256, 20000
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = steps
  c.batch_size = 64              # pixels, as the official loader
  c.eval_batch_size = 4096
  c.log_every = 20 if dataset == "tiny" else 500
  c.eval_every = steps
  c.checkpoint_every = 0 if dataset == "tiny" else steps
  c.keep_checkpoints = 1
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.model = ml_collections.ConfigDict(dict(name="pixel_ensemble", num_classes=classes,
                                           dim=dim, variants=variants, members=10,
                                           gate=not plain))
  c.task = ml_collections.ConfigDict(dict(name="pixel_ensemble", sparsity=not plain,
                                          num_classes=classes, ignore_label=255))
  c.data = ml_collections.ConfigDict(dict(name="diffusion_pixels", train_split="train",
                                          eval_split="test", feature_dirs=(),
                                          label_size=label_size, ignore_label=255,
                                          pool_seed=None))
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3,
                                               schedule="constant", warmup_steps=0,
                                               weight_decay=0.0, transforms=()))
  return c

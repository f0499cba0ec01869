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
`spair_tiny:<dim>,<attn>` (tests).
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
  c.checkpoint_every = steps if tiny else 500
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


def get_config(arg: str = "horse21") -> ml_collections.ConfigDict:
  name, _, rest = arg.partition(":")
  if name in ("spair", "spair_tiny"):
    return spair(rest)
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
  c.checkpoint_every = steps
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

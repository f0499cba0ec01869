"""Pixel heads on diffusion features (label-scarce segmentation): the GATE aggregator over feature
variants (Meng et al. 2024, "Suppress Content Shift") or the plain DDPM-segmentation ensemble.

    # 1. one extraction per variant (configs/diffusion/features.py), for train and test images:
    python -m ml_pipelines.jobs.diffusion_features --config=configs/diffusion/features.py:horse21_amalgamation \
        --out=/feats/horse21/plain --config.weights_dir=SD15 --config.images_dir=/data/horse_21/real/train
    #    ... fine-grained prompt, ControlNet-canny (--config.controlnet_dir=... --config.denoising_from=60),
    #    LoRA (--config.lora=...), then the same with --config.split=test on real/test.
    # 2. the head:
    python -m ml_pipelines.train --config=configs/diffusion/gate.py:horse21 --workdir=/tmp/gate_horse21 \
        --config.data.feature_dirs="('/feats/horse21/plain','/feats/horse21/prompt','/feats/horse21/canny','/feats/horse21/lora')"

Arguments: `horse21` (GATE, 4 variants of practical + 154 attention channels = 3674), `horse21_plain`
(the ensemble on one variant), `tiny:<dim>,<variants>` (tests and the demo).
"""
import ml_collections

CLASSES = {"horse21": 21, "bedroom28": 28, "ffhq34": 34, "cat15": 15, "celeba19": 19}


def get_config(arg: str = "horse21") -> ml_collections.ConfigDict:
  name, _, rest = arg.partition(":")
  plain = name.endswith("_plain")
  dataset = name.removesuffix("_plain")
  if dataset == "tiny":
    dim, variants = (int(v) for v in rest.split(","))
    classes, label_size, steps = 4, 8, 200
  else:
    dim, variants, classes, label_size, steps = 3674, 1 if plain else 4, CLASSES[dataset], 256, 20000
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
  c.model = ml_collections.ConfigDict(dict(name="pixel_ensemble", num_classes=classes, dim=dim,
                                           variants=variants, members=10, gate=not plain))
  c.task = ml_collections.ConfigDict(dict(name="pixel_ensemble", sparsity=not plain,
                                          num_classes=classes, ignore_label=255))
  c.data = ml_collections.ConfigDict(dict(name="diffusion_pixels", train_split="train",
                                          eval_split="test", feature_dirs=(),
                                          label_size=label_size, ignore_label=255))
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3,
                                               schedule="constant", warmup_steps=0,
                                               weight_decay=0.0, transforms=()))
  return c

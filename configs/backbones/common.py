"""The DeiT training recipe (Touvron et al. 2021, "Training data-efficient image transformers",
Table 9) shared by every backbone config, on TFDS imagenet2012 or the embedded digits_rgb.

AdamW, lr = base_lr * batch / 1024 (DeiT: 5e-4 per 512), linear warm-up then cosine, weight decay on
kernels only, label smoothing 0.1, mixup 0.8 / cutmix 1.0 (one per batch), RandAugment m9 std 0.5,
stochastic depth; model EMA off by default (DeiT's 0.99996: `--config.ema_decay=0.99996`,
evaluated beside the trained weights as `eval/ema_*`); bfloat16 compute with float32 parameters;
`model.remat` for activation rematerialisation; fsdp rules that split every kernel (and position
embeddings) over the fsdp axis. `init_from` fine-tunes from pretrained weights (empty path: from
scratch): `--config.init_from.path=FILE` with the family's converter already set; a new head
(digits_rgb's 10 classes) takes `--config.init_from.skip=^head/` (ResNet: `^fc/`).
"""
import ml_collections

IMAGENET_TRAIN = 1_281_167


def deit_config(model: str, arg: str | None, *, base_lr: float = 1e-3, weight_decay: float = 0.05,
                drop_path: float = 0.1, warmup_epochs: int = 5, epochs: int = 300,
                tiny_model: dict | None = None, converter: str = "ours"
                ) -> ml_collections.ConfigDict:
  """arg: 'imagenet2012' (default) or 'digits_rgb' (embedded, 32x32, tiny widths from `tiny_model`);
  converter: the `models.convert` name of the family's pretrained checkpoints."""
  dataset = arg or "imagenet2012"
  c = ml_collections.ConfigDict()
  c.seed = 0
  embedded = dataset == "digits_rgb"
  c.batch_size = 64 if embedded else 1024
  steps_per_epoch = (1437 if embedded else IMAGENET_TRAIN) // c.batch_size
  epochs = 30 if embedded else epochs
  c.total_steps = epochs * steps_per_epoch
  c.eval_batch_size = 128 if embedded else 1024
  c.log_every = 50 if embedded else 500
  c.eval_every = 5 * steps_per_epoch
  c.checkpoint_every = 5 * steps_per_epoch
  c.keep_checkpoints = 3
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ((r"(kernel|pos_embed)$", "fsdp"),)
  size = 32 if embedded else 224
  c.model = ml_collections.ConfigDict(dict(name=model, num_classes=10 if embedded else 1000,
                                           dtype="bfloat16", remat=False, drop_path=drop_path))
  if embedded:
    c.model.update(tiny_model or {})
  c.task = ml_collections.ConfigDict(dict(name="classification", label_smoothing=0.1,
                                          mixup_alpha=0.8, cutmix_alpha=1.0))
  c.data = ml_collections.ConfigDict(dict(
      name=dataset, train_split="train", eval_split="test" if embedded else "validation",
      image_size=size, randaugment_ops=2, randaugment_magnitude=9.0, randaugment_std=0.5))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=base_lr * c.batch_size / 1024, schedule="cosine",
      warmup_steps=warmup_epochs * steps_per_epoch, weight_decay=weight_decay,
      weight_decay_mask="kernel$", transforms=()))
  c.ema_decay = 0.0
  c.init_from = ml_collections.ConfigDict(dict(path="", converter=converter, skip="", strict=True))
  return c

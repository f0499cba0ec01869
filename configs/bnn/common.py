"""Shared schedule of the ReSTE configs (Wu et al. ICCV 2023; official DravenALG/ReSTE).

arg "cifar10": the paper's CIFAR-10 recipe -- SGD momentum 0.9, lr 0.1 cosine, weight decay 1e-4,
batch 256, estimator ReSTE with o_end = 3 and t = 1.5, o updated once per epoch (epoch / epochs, as
the official main.py); 400 epochs (our choice of length; the official README runs 1000).
arg "digits" (default): the embedded scikit-learn digits (8x8x1), a narrow network, 300 steps --
trains in a few minutes on a laptop CPU, no download.
"""
import ml_collections

CIFAR10_TRAIN = 50_000


def bnn_config(model: str, arg: str | None, *, cifar_width: int, digits_width: int,
               **model_kw) -> ml_collections.ConfigDict:
  dataset = arg or "digits"
  if dataset not in ("digits", "cifar10"):
    raise ValueError(f"Dataset arg must be 'digits' or 'cifar10', got {dataset!r}.")
  c = ml_collections.ConfigDict()
  c.seed = 0
  cifar = dataset == "cifar10"
  c.batch_size = 256 if cifar else 64
  steps_per_epoch = CIFAR10_TRAIN // c.batch_size  # full batches (officially + a partial one)
  c.total_steps = 400 * steps_per_epoch if cifar else 300
  c.eval_batch_size = 512 if cifar else 128
  c.log_every = 100 if cifar else 50
  c.eval_every = 5000 if cifar else 150
  c.checkpoint_every = 5000 if cifar else 150
  c.keep_checkpoints = 3
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.model = ml_collections.ConfigDict(dict(
      name=model, num_classes=10, in_channels=3 if cifar else 1,
      width=cifar_width if cifar else digits_width, estimator="reste", o_end=3.0, t=1.5,
      **{k: (v[0] if cifar else v[1]) for k, v in model_kw.items()}))
  c.task = ml_collections.ConfigDict(dict(name="bnn_classification", label_smoothing=0.0,
                                          indicator_examples=256,
                                          schedule_steps_per_epoch=steps_per_epoch if cifar else 0))
  c.data = ml_collections.ConfigDict(dict(name=dataset, train_split="train",
                                          eval_split="test"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False, schedule="cosine",
      warmup_steps=0, weight_decay=1e-4, weight_decay_mask="kernel$", transforms=()))
  return c

"""Shared parts of the semi-supervised configs (FreeMatch, DSA + FreeMatch).

The recipe of FixMatch / FreeMatch as DSA runs it (Qi2019KB/DSA `DSA_FreeMatch.py`,
`DSA_class_exec.py`): 32 labeled + 7 x 32 unlabeled images per step, SGD lr 0.03 with Nesterov
momentum 0.9 and weight decay 5e-4 (not on biases and BN), lr * max(0, cos(7 pi t / 16 T)), model
EMA 0.999 for testing, 200 epochs of 1024 steps.
"""
from __future__ import annotations

import os

import ml_collections

CIFAR = {  # dataset: (builder, classes, WRN widen factor, default number of labels)
    "cifar10": ("cifar10_ssl", 10, 2, 40),
    "cifar100": ("cifar100_ssl", 100, 8, 400),
}


def parse(arg: str | None) -> tuple[str, int | None]:
  """'cifar10,40' -> ('cifar10', 40); 'digits' -> ('digits', None)."""
  name, _, labels = (arg or "cifar10,40").partition(",")
  if name not in (*CIFAR, "digits"):
    raise ValueError(f"Unknown dataset {name!r}; use cifar10[,labels], cifar100[,labels] or "
                     f"digits.")
  return name, int(labels) if labels else None


def base(dataset: str, num_labeled: int | None) -> tuple[ml_collections.ConfigDict, int]:
  """(the run config without model and task, steps per epoch)."""
  c = ml_collections.ConfigDict()
  c.seed = 1388
  mu, labeled_batch = 7, 32
  c.batch_size = labeled_batch * (1 + mu)
  c.eval_batch_size = 32  # the count-weighted ensemble weighs heads per test batch of 32
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.keep_checkpoints = 3
  c.keep_period = 0
  c.ema_decay = 0.999
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4,
      weight_decay_mask="kernel$", schedule="cosine_cycles", num_cycles=7 / 16, transforms=()))
  if dataset == "digits":
    # The embedded stand-in (ml_pipelines/jobs/dsa_demo.py): 2 labels per class, 16x16 digits.
    c.total_steps, steps_per_epoch = 600, 100
    c.batch_size = 16 * (1 + 3)
    c.eval_batch_size = 40
    c.log_every, c.eval_every, c.checkpoint_every = 50, 300, 300
    c.data = ml_collections.ConfigDict(dict(
        name="digits_ssl", train_split="train", eval_split="test", image_size=16,
        sampler=dict(name="labeled_unlabeled", ratio=3, num_labeled=num_labeled or 20)))
    c.optimizer.learning_rate = 0.1
    c.ema_decay = 0.99  # a 600-step run: the code's 0.999 would still weigh the init by 0.55
  else:
    builder, _, _, default_labels = CIFAR[dataset]
    steps_per_epoch = 1024
    c.total_steps = 200 * steps_per_epoch
    c.log_every, c.eval_every, c.checkpoint_every = 100, steps_per_epoch, steps_per_epoch
    # The paper's labeled splits (Qi2019KB/DSA datasources/temp_data/, see splits/make_splits.py)
    # where it has one for this count; otherwise num_labeled / K per class drawn with the seed.
    num_labeled = num_labeled or default_labels
    split = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits",
                         f"{dataset}_{num_labeled}.npy")
    sampler = dict(name="labeled_unlabeled", ratio=mu, num_labeled=num_labeled)
    if os.path.exists(split):
      sampler.update(labeled_file=split, source_index="source_index")
    c.data = ml_collections.ConfigDict(dict(name=builder, train_split="train", eval_split="test",
                                            sampler=sampler))
  return c, steps_per_epoch


def saf_weight(dataset: str, num_labeled: int) -> float:
  """FreeMatch's fairness weight as DSA sets it: 0.01 for CIFAR-100 with 400 labels, else 0.05."""
  return 0.01 if (dataset, num_labeled) == ("cifar100", 400) else 0.05

"""SNELL through the one trainer (configs/peft/snell.py): no gradient and no optimizer memory for
the frozen weights in the compiled step, and the per-dataset table of the official scripts. (A run
on a fake VTAB-1k task checks the trained/frozen state: tests/test_peft_data.py.)"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from configs.peft import snell
from ml_pipelines import train

TRAINABLE = ("adapter_", "head/", "cls_token")


def _flat(tree):
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _digits(**overrides):
  c = snell.get_config("digits")
  c.total_steps, c.eval_every, c.checkpoint_every, c.log_every = 4, 4, 0, 2
  c.batch_size = 16
  c.optimizer.warmup_steps = 0
  for k, v in overrides.items():
    node, *path = k.split(".")
    target = c
    for p in [node] + path[:-1]:
      target = target[p]
    target[path[-1] if path else node] = v
  return c


def test_frozen_backbone_saves_gradient_and_optimizer_memory():
  """Compiled train step (XLA memory analysis): SNELL's step needs at least the frozen weights'
  gradient and two Adam moments less than full fine-tuning of the same adapted model."""
  def footprint(trainable):
    c = _digits(**{"model.embed_dim": 64, "model.num_heads": 4})
    c.optimizer.trainable = trainable
    run = train.Run(c, "/tmp/unused_snell_workdir")
    m = run.lower_train_step().compile().memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes, run
  full, run = footprint("")
  frozen, _ = footprint(snell.TRAINABLE)
  params = _flat(run.variable_shapes["params"])
  frozen_bytes = sum(np.prod(v.shape) * 4 for k, v in params.items()
                     if not any(t in k for t in TRAINABLE))
  # full fine-tuning carries (in and out) the frozen weights' Adam moments and forms their gradient
  assert full - frozen >= 3 * frozen_bytes, (full, frozen, frozen_bytes)


def test_per_dataset_table_follows_the_official_scripts():
  cub, dogs32, flowers32 = (snell.get_config(a) for a in ("cub,8", "dogs,32", "flowers,32"))
  assert cub.model.adapter.sparsity == 0.3 and cub.optimizer.learning_rate == 1e-3
  assert cub.model.num_classes == 200 and cub.data.eval_split == "test"
  assert dogs32.optimizer.weight_decay == 5e-3 and dogs32.optimizer.learning_rate == 3e-4
  assert flowers32.model.adapter.sparsity == 0.8 and flowers32.model.adapter.rank == 32
  assert snell.get_config("cars").model.adapter.sparsity == 0.0  # the code's KLoRA
  cam = snell.get_config("vtab_patch_camelyon")
  assert (cam.optimizer.learning_rate, cam.optimizer.weight_decay,
          cam.batch_size) == (7e-4, 0.05, 16)
  assert cam.model.adapter.rank == 32 and cam.model.num_classes == 2
  assert cam.total_steps == 100 * (1000 // 16)
  assert snell.get_config("vtab_dtd").model.adapter.sparsity == 0.995


def test_unknown_vtab_task_lists_the_valid_ones():
  with pytest.raises(ValueError, match="valid tasks: caltech101, cifar, dtd"):
    snell.get_config("vtab_cifar10")

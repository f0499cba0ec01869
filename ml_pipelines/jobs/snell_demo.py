"""SNELL on the embedded digits: a small ViT pretrained on digits 0-4, adapted frozen to digits 5-9.

Pretrains a 2-block ViT (patch 8, width 64) on digits 0-4 through the shared trainer, then adapts
it to the unseen digits 5-9 from that checkpoint (`init_from`, new head) with: the head alone
(linear probe), LoRA-8, the distance kernel alone (KLoRA-8, s = 0), SNELL-8 (s = 0.5) and full
fine-tuning; adapters on q, k, v, proj, fc1, fc2 of both blocks, trained with the head and the class
token as in the official code (github.com/ssfgunner/SNELL), each at the best learning rate of a
small sweep (1e-3 / 3e-3 / 1e-2 / 3e-2: SNELL's applied delta dW |dW| starts at ~1e-4 in this tiny
model and needs the largest rate). The table gives test accuracy, the
trainable parameter count, the optimizer-state bytes and the numerical rank of the trained merged
delta of block 0's fc1 (64 x 256): LoRA's is at most 8, the distance kernel's near full (64).

    python -m ml_pipelines.jobs.snell_demo [--pretrain_steps=600 --steps=300 --methods=...]
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ml_pipelines.jobs import common

METHODS = ("head_only", "lora8", "kernel8", "snell8", "full")
ADAPTERS = {"lora8": dict(kind="lora", rank=8), "kernel8": dict(kind="kernel", rank=8),
            "snell8": dict(kind="kernel", rank=8, sparsity=0.5)}
LEARNING_RATES = {"head_only": 1e-2, "lora8": 1e-2, "kernel8": 1e-2, "snell8": 3e-2, "full": 1e-3}
PRETRAIN_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
VIT = dict(name="vit_b16", embed_dim=64, depth=2, num_heads=4, patch_size=8, img_size=32,
           num_classes=5, drop_path=0.1, dtype="float32")


def _config(classes, steps: int, lr: float, seed: int):
  import ml_collections
  c = common.load_config("peft", "snell", "digits")
  c.seed = seed
  c.data = ml_collections.ConfigDict(dict(
      name="digits_rgb_classes", classes=classes, train_split="train", eval_split="test",
      image_size=32, randaugment_ops=0, crop_scale_min=0.7))
  c.batch_size, c.total_steps = 64, steps
  c.eval_every = c.checkpoint_every = steps
  c.log_every = max(steps // 4, 1)
  c.optimizer.learning_rate = lr
  c.optimizer.end_factor = 0.0
  c.optimizer.warmup_steps = steps // 10
  return c


def pretrain(workdir: str, steps: int, seed: int) -> str:
  import ml_collections
  from ml_pipelines import train
  c = _config(PRETRAIN_CLASSES, steps, 3e-3, seed)
  c.model = ml_collections.ConfigDict({**VIT, "drop_path": 0.0})
  c.optimizer.trainable = ""
  c.optimizer.weight_decay, c.optimizer.weight_decay_mask = 0.05, "kernel$"
  out = os.path.join(workdir, "pretrain_0-4")
  acc = train.train_and_evaluate(c, out)["eval/accuracy"]
  print(f"pretrained on digits 0-4: test accuracy {acc:.4f}", flush=True)
  return out


def merged_rank(params: dict, adapter: dict) -> int:
  """Numerical rank (NumPy's default tolerance) of the trained dW_s of blocks/0/mlp/fc1."""
  from models import peft
  blocks = params["blocks"]
  p = (blocks[0] if 0 in blocks else blocks["0"])["mlp"]["adapter_fc1"]
  a, b = np.asarray(p["a"]), np.asarray(p["b"])
  if adapter["kind"] == "lora":
    dw = a @ b
  else:
    dw = np.asarray(peft.sparse_kernel_delta(a, b, sparsity=adapter.get("sparsity", 0.0)))
  return int(np.linalg.matrix_rank(dw))


def adapt(method: str, source: str, workdir: str, steps: int, seed: int,
          lr: float | None = None) -> dict:
  import jax
  import ml_collections
  from configs.peft import snell
  from ml_pipelines import train
  from ml_pipelines.trainer import partition
  lr = lr or LEARNING_RATES[method]
  c = _config(TARGET_CLASSES, steps, lr, seed)
  model = dict(VIT)
  if method in ADAPTERS:
    model["adapter"] = dict(ADAPTERS[method])
  c.model = ml_collections.ConfigDict(model)
  c.optimizer.trainable = {"head_only": r"^head/", "full": ""}.get(method, snell.TRAINABLE)
  c.init_from = ml_collections.ConfigDict(dict(path=source, converter="ours",
                                               skip=r"(adapter_|^head/)", strict=True))
  out = train.train_and_evaluate(c, os.path.join(workdir, f"adapt_{method}"))
  state = out["state"]
  row = {"method": method, "accuracy": out["eval/accuracy"],
         "trainable": partition.count(state["params"]),
         "opt_bytes": sum(x.nbytes for x in jax.tree_util.tree_leaves(state["opt_state"])),
         "rank": "-"}
  if method in ADAPTERS:
    row["rank"] = merged_rank(train.Env.variables(state)[0], ADAPTERS[method])
  return row


def table(rows: list[dict]) -> str:
  return common.markdown_table(
      ["method", "test accuracy (digits 5-9)", "trainable params", "optimizer-state bytes",
       "rank of merged fc1 delta (64 x 256)"],
      [[r["method"], f"{r['accuracy']:.4f}", f"{r['trainable']:,}", f"{r['opt_bytes']:,}",
        r["rank"]] for r in rows])


def main(argv=None):
  p = common.parser(__doc__, workdir=None, methods=METHODS)
  p.add_argument("--pretrain_steps", type=int, default=600)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  common.start_jax(a)
  workdir = a.workdir or tempfile.mkdtemp(prefix="snell_demo_")
  source = pretrain(workdir, a.pretrain_steps, a.seed)
  rows = [adapt(m, source, workdir, a.steps, a.seed) for m in a.methods.split(",")]
  print(table(rows))
  return rows


if __name__ == "__main__":
  main()

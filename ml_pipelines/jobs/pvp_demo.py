"""PVP demo on digit scenes (no download, CPU): a tiny CLIP is pretrained on the spot, then PVP
(stage 1 + 2) and the text-prompt-only baseline (TaI-DPT) are trained on sentences only and
evaluated zero-shot by mAP on 64 x 64 canvases holding 2-3 digits; prints one table
(method | mAP | trainable parameters | seconds) and writes it as markdown.

    python -m ml_pipelines.jobs.pvp_demo [--workdir=workdirs/pvp_demo] [--clip_steps=400]

1. CLIP pretraining (the stand-in for OpenAI's): `clip_tiny_rn` (ModifiedResNet (1,1,1,1) width 8,
   text 2 x 32) with CLIP's symmetric contrastive loss on batches of the ten digit classes, each a
   single training-row digit in a random cell of a 64 x 64 canvas, against a caption drawn from a
   few templates ("a photo of the number three", "3", ...), tokenised with the real CLIP BPE. The
   weights are saved as an open_clip state dict and read by the PVP runs through `init_from`.
2. "zero-shot CLIP": hand-written prompts "a photo of the number {name}." scored against the image
   feature (attention pool with positional embedding), no training on sentences.
3. `configs/peft/pvp.py:digits,text_only` (TaI-DPT) and `configs/peft/pvp.py:digits` (PVP) through
   the trainer, on the shipped template sentences only.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from ml_pipelines.jobs import common

TEMPLATES = ("a photo of the number {}.", "the digit {}", "{}", "a handwritten {}.")


def clip_pairs(rng: np.random.Generator):
  """Ten single-digit canvases (one per class, training rows) and their captions."""
  from ml_pipelines.data import digits as digits_data
  from ml_pipelines.data.multilabel import DIGIT_NAMES, clip_normalise
  from models.clip_tokenizer import tokenize
  images, target = digits_data.load()
  rows = digits_data.rows("train")
  canvas = np.zeros((10, 64, 64, 3), np.float32)
  captions = []
  for c in range(10):
    digit = images[rng.choice(rows[target[rows] == c])] / 16.0
    y, x = divmod(int(rng.integers(4)), 2)
    canvas[c, 32 * y:32 * y + 32, 32 * x:32 * x + 32] = np.kron(digit, np.ones((4, 4)))[..., None]
    word = DIGIT_NAMES[c] if rng.random() < 0.7 else str(c)
    captions.append(TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(word))
  return clip_normalise(canvas), tokenize(captions)


def pretrain_clip(clip_config, steps: int, path: str, seed: int = 0) -> None:
  """CLIP's contrastive loss (Radford et al. 2021, Fig. 3) on digit pairs; saves an open_clip
  state dict to `path`."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from safetensors.numpy import save_file
  import models
  from models import convert
  model = models.build(clip_config, seed=seed)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  tx = optax.adamw(optax.cosine_decay_schedule(2e-3, steps), weight_decay=1e-4)
  opt = tx.init(params)

  @jax.jit
  def step(params, rest, opt, images, tokens):
    def loss_fn(p):
      m = nnx.merge(graphdef, p, rest)
      logits = m(images, tokens)
      labels = jnp.arange(logits.shape[0])
      loss = (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
              + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()) / 2
      return loss, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param)))  # BatchNorm statistics
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), rest, opt, loss

  rng = np.random.default_rng(seed)
  for i in range(steps):
    images, tokens = clip_pairs(rng)
    params, rest, opt, loss = step(params, rest, opt, jnp.asarray(images), jnp.asarray(tokens))
    if (i + 1) % 100 == 0:
      print(f"  clip step {i + 1}/{steps}  loss {float(loss):.3f}", flush=True)
  model = nnx.merge(graphdef, params, rest)
  save_file(convert.to_state_dict(model, convert.get("open_clip")), path)


def zero_shot_clip(clip_config, path: str) -> float:
  """mAP of hand-written prompts on the digit-scene test split (global image feature)."""
  import jax.numpy as jnp
  from flax import nnx
  import models
  from models import convert
  from ml_pipelines.data.multilabel import DIGIT_NAMES, clip_normalise, digit_scenes
  from ml_pipelines.evaluators.multilabel import mean_average_precision
  from models.clip_tokenizer import tokenize
  model = nnx.eval_shape(lambda: models.build(clip_config))
  convert.load_into(model, convert.load_state_dict(path), converter=convert.get("open_clip"))
  model.eval()
  scenes = digit_scenes(300)
  tokens = tokenize([f"a photo of the number {n}." for n in DIGIT_NAMES])
  scores = nnx.jit(lambda m, i, t: m(i, t))(model, jnp.asarray(clip_normalise(scenes["image"])),
                                            jnp.asarray(tokens))
  return mean_average_precision(scenes["labels"], np.asarray(scores))


def run_pvp(arg: str, clip_path: str, workdir: str):
  from ml_pipelines import train
  c = common.load_config("peft", "pvp", arg)
  c.init_from.path = clip_path
  start = time.time()
  result = train.train_and_evaluate(c, workdir)
  trainable = sum(int(np.prod(np.shape(x))) for x in
                  __import__("jax").tree_util.tree_leaves(result["state"]["params"]))
  return result["eval/mAP"], trainable, time.time() - start


def main(argv=None):
  p = common.parser(__doc__, workdir=None)
  p.add_argument("--clip_steps", type=int, default=400)
  args = p.parse_args(argv)
  common.start_jax(args)
  workdir = args.workdir or tempfile.mkdtemp(prefix="pvp_demo_")
  os.makedirs(workdir, exist_ok=True)
  clip_config = common.load_config("peft", "pvp", "digits").model.clip
  clip_path = os.path.join(workdir, "tiny_clip.safetensors")
  rows = []
  start = time.time()
  reused = os.path.exists(clip_path)  # a rerun in the same workdir keeps its pretrained CLIP
  if not reused:
    pretrain_clip(clip_config, args.clip_steps, clip_path)
  zero_shot = zero_shot_clip(clip_config, clip_path)
  rows.append(["zero-shot CLIP (hand-written prompts)", f"{100 * zero_shot:.1f}", 0,
               "reused" if reused else f"{time.time() - start:.0f} (CLIP pretraining)"])
  for name, arg in (("text prompts only (TaI-DPT)", "digits,text_only"),
                    ("PVP (stage 1 + 2)", "digits")):
    m, trainable, seconds = run_pvp(arg, clip_path, os.path.join(workdir, arg.replace(",", "_")))
    rows.append([name, f"{100 * m:.1f}", f"{trainable:,}", f"{seconds:.0f}"])
  table = common.markdown_table(["method", "mAP (%)", "trainable parameters", "seconds"], rows)
  print(table)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(table + "\n")
  return rows


if __name__ == "__main__":
  main()

"""Video-QA throughput: training clips/s of ALPRO's classifier (ours, JAX) at 16 frames of 224 px,
and answers/s of MCG's answer generator decoding greedily with and without its key/value cache;
ALPRO's official training step beside ours when a GPU and the official code are present.

    python benchmarks/videoqa.py --batch=12 --frames=16 --steps=10
    # CPU run (reduced sizes):  --tiny --batch=4 --frames=4 --steps=2

Model (ALPRO, salesforce/ALPRO `config_release/base_model.json`, `msrvtt_qa.json`): TimeSformer-B/16
(divided space-time attention) on the clip, BERT-base whose layers 6-11 fuse the question (40
tokens) with the video tokens, the 768-1536-1500 answer head, cross-entropy, AdamW; bf16 towers,
f32 parameters. `--tiny`: 2-block, 64-wide towers on 32 px frames.
Decoding: MCG's generator (BERT-base-shaped decoder, 12 layers; tiny: 2 layers of 64) writes 8
answer tokens for each question given the fused question tokens (the encoder is not timed): with
the cache (`models.decoding.greedy` over `AnswerDecoder.step`, each position reads the earlier
keys/values from fixed buffers) and without it (every position re-runs the teacher-forced decoder
over the whole prefix, the same fixed shapes, so both are one jitted loop).
Official: ALPRO's `AlproForSequenceClassification` (`third_party/ALPRO`, a checkout of
salesforce/ALPRO with its requirements; BERT built from `base_model.json` at random init instead of
downloading bert-base-uncased; apex and horovod, which its QA step does not use, stubbed when
missing), fp16 autocast as its `fp16` option, CUDA only. Not run yet: no GPU in the session that
wrote it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import models  # noqa: E402
from models import decoding  # noqa: E402

WORDS, ANSWER_TOKENS, ANSWERS = 40, 8, 1500


def towers(args):
  if args.tiny:
    vision = dict(name="timesformer_b16", embed_dim=64, depth=2, num_heads=2, patch_size=16,
                  img_size=32, num_frames=args.frames, drop_path=0.0, dtype="bfloat16")
    text = dict(name="bert_base", vocab_size=30522, hidden_size=64, num_layers=2, num_heads=2,
                fusion_layer=1, encoder_width=64, dtype="bfloat16")
    decoder = dict(name="answer_decoder", vocab_size=30522, hidden_size=64, num_layers=2,
                   num_heads=2, memory_width=64)
    return vision, text, decoder, 32
  vision = dict(name="timesformer_b16", num_frames=args.frames, img_size=224, drop_path=0.1,
                dtype="bfloat16")
  text = dict(name="bert_base", fusion_layer=6, encoder_width=768, dtype="bfloat16")
  return vision, text, dict(name="answer_decoder", vocab_size=30522, memory_width=768), 224


def _timed(fn, *a, steps):
  jax.block_until_ready(fn(*a))
  jax.block_until_ready(fn(*a))
  t = time.perf_counter()
  for _ in range(steps):
    out = fn(*a)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / steps


def bench_classifier(args):
  vision, text, _, size = towers(args)
  model = models.build(dict(name="videoqa_classifier", vision=vision, text=text,
                            num_answers=ANSWERS))
  rng = np.random.default_rng(0)
  b = args.batch
  batch = {"video": jnp.asarray(rng.integers(0, 255, (b, args.frames, size, size, 3)), jnp.uint8),
           "frame_mask": jnp.ones((b, args.frames), bool),
           "question": jnp.asarray(rng.integers(1000, 30000, (b, WORDS)), jnp.int32),
           "question_mask": jnp.ones((b, WORDS), bool),
           "label": jnp.asarray(rng.integers(0, ANSWERS, b), jnp.int32)}
  tx = nnx.Optimizer(model, optax.adamw(5e-5, b1=0.9, b2=0.98, weight_decay=1e-3), wrt=nnx.Param)

  def loss_fn(m, bt):
    logits = m(bt["video"], bt["frame_mask"], bt["question"], bt["question_mask"])
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           bt["label"]).mean()

  @nnx.jit
  def step(m, tx, bt):
    loss, grads = nnx.value_and_grad(loss_fn)(m, bt)
    tx.update(m, grads)
    return loss
  return b / _timed(step, model, tx, batch, steps=args.steps)


def bench_decoding(args):
  *_, decoder, _ = towers(args)
  model = models.build(decoder)
  model.eval()
  rng = np.random.default_rng(0)
  b, width = args.decode_batch, decoder.get("memory_width", 768)
  memory = jnp.asarray(rng.normal(size=(b, WORDS, width)), jnp.float32)
  memory_mask = jnp.ones((b, WORDS), bool)
  bos = jnp.full((b,), 101, jnp.int32)

  @nnx.jit
  def cached(m, memory, memory_mask):
    cache = m.init_cache(memory, memory_mask, ANSWER_TOKENS)
    return decoding.greedy(m.step, cache, bos, ANSWER_TOKENS, eos=102)[0]

  @nnx.jit
  def uncached(m, memory, memory_mask):
    def step(tokens, t, prefix):  # the prefix written so far, re-read whole every position
      prefix = prefix.at[:, t].set(tokens)
      visible = jnp.arange(ANSWER_TOKENS)[None] <= t
      logits = m(prefix, jnp.broadcast_to(visible, prefix.shape), memory, memory_mask)
      return jnp.take(logits, t, axis=1), prefix
    prefix = jnp.zeros((b, ANSWER_TOKENS), jnp.int32)
    return decoding.greedy(step, prefix, bos, ANSWER_TOKENS, eos=102)[0]
  with_cache = _timed(cached, model, memory, memory_mask, steps=args.steps)
  without = _timed(uncached, model, memory, memory_mask, steps=args.steps)
  same = bool(np.array_equal(np.asarray(cached(model, memory, memory_mask)),
                             np.asarray(uncached(model, memory, memory_mask))))
  return b / with_cache, b / without, same


def bench_alpro(args):
  """ALPRO's official QA training step on CUDA, or the reason it was skipped."""
  try:
    import torch
  except ImportError:
    return "torch missing"
  if not torch.cuda.is_available():
    return "no CUDA device"
  repo = os.path.join(ROOT, "third_party", "ALPRO")
  if not os.path.isdir(repo):
    return f"official code not at {repo}"
  sys.path.insert(0, repo)
  sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
  import importlib.util
  import stub_imports  # apex / horovod: imported by ALPRO, unused by its QA training step
  stub_imports.install(tuple(m for m in ("apex", "horovod") if importlib.util.find_spec(m) is None))
  try:
    import json
    from src.modeling import alpro_models, xbert
    from transformers import BertConfig
    for cls in (xbert.BertModel, xbert.BertForMaskedLM):  # random init, no download
      cls.from_pretrained = classmethod(lambda c, name, config=None, **kw: c(config, **kw))
    with open(os.path.join(repo, "config_release", "base_model.json")) as f:
      config = BertConfig(**json.load(f), num_labels=ANSWERS)
    with open(os.path.join(repo, "config_release", "timesformer_divst_8x32_224_k600.json")) as f:
      vcfg = dict(json.load(f), num_frm=args.frames, img_size=224)
    model = alpro_models.AlproForSequenceClassification(config, vcfg).cuda().train()
  except Exception as e:  # a missing requirement of the official code
    return f"official model not built ({type(e).__name__}: {e})"
  opt = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.98), weight_decay=1e-3)
  b = args.batch
  batch = {"visual_inputs": torch.randn(b, args.frames, 3, 224, 224, device="cuda"),
           "text_input_ids": torch.randint(1000, 30000, (b, WORDS), device="cuda"),
           "text_input_mask": torch.ones(b, WORDS, dtype=torch.long, device="cuda"),
           "labels": torch.randint(0, ANSWERS, (b,), device="cuda")}

  def step():
    with torch.autocast("cuda", dtype=torch.float16):
      loss = model(batch)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
  for _ in range(2):
    step()
  torch.cuda.synchronize()
  t0 = time.perf_counter()
  for _ in range(args.steps):
    step()
  torch.cuda.synchronize()
  return f"{b * args.steps / (time.perf_counter() - t0):.2f}"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=12)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--decode_batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--tiny", action="store_true", help="reduced towers for a CPU run")
  args = p.parse_args(argv)
  train = bench_classifier(args)
  cached, uncached, same = bench_decoding(args)
  print(f"device: {jax.devices()[0].device_kind}; batch {args.batch}, {args.frames} frames"
        f"{' of 32 px (tiny towers)' if args.tiny else ' of 224 px'}; decoding "
        f"{args.decode_batch} answers of {ANSWER_TOKENS} tokens")
  print("| measure | ours (JAX) | ALPRO official (PyTorch) |\n|---|---:|---:|")
  print(f"| classifier training, clips/s | {train:.2f} | {bench_alpro(args)} |")
  print(f"| MCG greedy decoding with cache, answers/s | {cached:.1f} | no official code |")
  print(f"| MCG greedy decoding without cache, answers/s | {uncached:.1f} | no official code |")
  print(f"(cached and uncached answers identical: {same})")


if __name__ == "__main__":
  main()

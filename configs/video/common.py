"""Shared parts of the video-language configs (TMVM, STVGFormer): run keys, the tiny towers the
embedded `moving_shapes` runs train from scratch, and the dataset table."""
import ml_collections

from ml_pipelines.data import moving_shapes

# moving_shapes towers, trained from scratch on 2 CPU cores in minutes: a 4-layer ViT-Tiny-like
# image tower (dim 128, patch 8 on 32 px frames) and a 2-layer BERT-style text encoder (dim 128).
TINY_VISION = dict(name="vit_b16", embed_dim=128, depth=4, num_heads=4, patch_size=8, img_size=32,
                   num_classes=None, drop_path=0.0)
TINY_TEXT = dict(name="bert_base", vocab_size=len(moving_shapes.VOCAB), hidden_size=128,
                 num_layers=2, num_heads=4, max_position=16)


def run_keys(c, *, total_steps: int, batch_size: int, eval_batch_size: int, eval_every: int):
  c.seed = 0
  c.total_steps = total_steps
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.log_every = max(1, min(50, total_steps // 10))
  c.eval_every = eval_every
  c.checkpoint_every = total_steps
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  return c

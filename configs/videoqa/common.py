"""Shared parts of the video-QA configs: the embedded `moving_shapes_qa` data and tiny towers, and
ALPRO's video-QA recipe for real data (salesforce/ALPRO `config_release/msrvtt_qa.json`)."""
import ml_collections

from configs.video import common as video_common
from ml_pipelines.data import moving_shapes

TINY_TEXT = dict(video_common.TINY_TEXT, num_layers=3, fusion_layer=2,
                 encoder_width=video_common.TINY_VISION["embed_dim"])
TINY_DECODER = dict(name="answer_decoder", vocab_size=len(moving_shapes.VOCAB), hidden_size=128,
                    num_layers=1, num_heads=4, max_position=16)
# every answer moving_shapes can give: 5 actions and 15 (colour, shape) entities
MS_ANSWERS = len(moving_shapes.MOTIONS) + len(moving_shapes.SHAPES) * len(moving_shapes.COLOURS)


def moving_shapes(c, *, total_steps: int = 600, name: str = "moving_shapes_qa", **data):
  """Run keys, data and optimizer of a `moving_shapes_qa` run trained from scratch."""
  video_common.run_keys(c, total_steps=total_steps, batch_size=64, eval_batch_size=100,
                        eval_every=total_steps)
  c.data = ml_collections.ConfigDict(dict(name=name, train_split="train",
                                          eval_split="test", **data))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-3, weight_decay=0.01, schedule="cosine", warmup_steps=50,
      param_groups={}))
  return c

"""Shared parts of the video-QA configs: the embedded `moving_shapes_qa` data and tiny towers, and
ALPRO's video-QA recipe for real data (salesforce/ALPRO `config_release/msrvtt_qa.json`,
`msvd_qa.json`): TimeSformer-B/16 on 16 frames of 224 px and BERT-base fusing from layer 6 by
self-attention over the concatenated question and video tokens (ALPRO's `xbert.py`), text
of at most 40 tokens, AdamW (0.9, 0.98) at 5e-5 with weight decay 1e-3, grad-norm clip 5 (MSVD-QA
20), batch 12 x 2 accumulation steps (here one batch of 24), 10 epochs (MSVD-QA 15). Differences:
ALPRO decays the rate linearly, the trainer's schedules offer cosine (used here, with 10% warm-up);
ALPRO resizes to 256 and crops 224, here `prep.video --size=224` stores 224 px frames. Answer
vocabularies: ALPRO's `num_labels` (MSRVTT-QA 1500, MSVD-QA 2423); ActivityNet-QA's 1000 is the
usual top-1000 choice of later work [inferred]. NExT-QA is multiple choice (5 candidates) and is
evaluated on `val` (its test answers are held back). The pretrained ALPRO checkpoint is not
loaded by these configs (the towers start from scratch unless `init_from` names converted
weights)."""
import ml_collections

from configs.video import common as video_common
from ml_pipelines.data import moving_shapes

# fusion="concat": ALPRO's fusion (self-attention over [question; video tokens]); "cross" selects
# ALBEF's cross-attention layers for comparison (`--config.model.text.fusion=cross`).
TINY_TEXT = dict(video_common.TINY_TEXT, num_layers=3, fusion_layer=2, fusion="concat",
                 encoder_width=video_common.TINY_VISION["embed_dim"])
# A tiny TimeSformer (ALPRO's kind of tower): it sees the frames' order, which the per-frame ViT
# path (frame tokens pooled as a set) does not, so it can tell "moves left" from "moves right".
TINY_VIDEO_VISION = dict(name="timesformer_b16", embed_dim=128, depth=2, num_heads=4, patch_size=8,
                         img_size=32, num_frames=8, drop_path=0.0)
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


# train questions, answer-vocabulary size (None: multiple choice), epochs, grad-norm clip
REAL = {"msrvtt_qa": (158581, 1500, 10, 5.0), "msvd_qa": (30933, 2423, 15, 20.0),
        "activitynet_qa": (32000, 1000, 10, 5.0), "nextqa": (34132, None, 10, 5.0)}
REAL_VISION = dict(name="timesformer_b16", num_frames=16, img_size=224, drop_path=0.1)
REAL_TEXT = dict(name="bert_base", vocab_size=30522, fusion_layer=6, fusion="concat",
                 encoder_width=768)
REAL_DECODER = dict(name="answer_decoder", vocab_size=30522)  # BERT-base shaped [inferred]


def real(c, dataset: str, **data):
  """Run keys, data and optimizer of ALPRO's fine-tuning recipe on `dataset` (module docstring)."""
  questions, answers, epochs, clip = REAL[dataset]
  steps = epochs * questions // 24
  video_common.run_keys(c, total_steps=steps, batch_size=24, eval_batch_size=24,
                        eval_every=steps // epochs)
  extra = {} if answers is None else {"top_answers": answers}
  c.data = ml_collections.ConfigDict(dict(
      name=dataset, data_dir=f"data/{dataset}", ann_dir=f"data/{dataset}/ann",
      bert_vocab="data/bert-base-uncased/vocab.txt", num_frames=16, max_words=40,
      train_split="train", eval_split="val" if dataset == "nextqa" else "test", **extra, **data))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=5e-5, b1=0.9, b2=0.98, weight_decay=1e-3, schedule="cosine",
      warmup_fraction=0.1, clip_grad_norm=clip, param_groups={}))
  return c

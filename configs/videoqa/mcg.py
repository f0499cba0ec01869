"""MCG (Yu et al., arXiv 2410.09379) generative video QA [inferred]: `mcg.py:<dataset>[,beams]`.

    python -m ml_pipelines.train --config=configs/videoqa/mcg.py:moving_shapes \
        --workdir=/tmp/mcg

Head-tail frame sampling for training (ALPRO's `sample_frame_indices`, 'headtail'), instance- and
token-level contrastive losses between video and question (ICL, TCL) and an answer decoder trained
by teacher forcing with label smoothing 0.1; evaluation decodes greedily (`beams` > 1: beam
search) and scores exact match per question type. Every weight (1, 1, 1) is [inferred]: the
paper's text could not be read.
"""
import ml_collections

from configs.videoqa import common


def get_config(arg=None):
  parts = (arg or "moving_shapes").split(",")
  if parts[0] != "moving_shapes":
    raise ValueError(f"Unknown video-QA dataset {parts[0]!r}; known: moving_shapes.")
  beams = int(parts[1]) if len(parts) > 1 else 1
  c = common.moving_shapes(ml_collections.ConfigDict(), train_sampling="headtail")
  c.model = ml_collections.ConfigDict(dict(
      name="mcg", vision=common.video_common.TINY_VISION, text=common.TINY_TEXT,
      decoder=common.TINY_DECODER, embed_dim=64))
  c.task = ml_collections.ConfigDict(dict(
      name="videoqa_generation", answer_weight=1.0, icl_weight=1.0, tcl_weight=1.0,
      smoothing=0.1, beams=beams))
  return c

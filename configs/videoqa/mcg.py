"""MCG (Yu et al., arXiv 2410.09379) generative video QA [inferred]: `mcg.py:<dataset>[,beams]`.

Datasets: `moving_shapes` (embedded; `moving_shapes32`: 32-frame videos of which head-tail
sampling reads 8, MCG's sparse sampling of long videos, with a tiny TimeSformer tower) and `msrvtt_qa`, `msvd_qa`, `activitynet_qa`, `nextqa` from their official layouts (the
generator learns the answer text; on NExT-QA the correct candidate's text, scored by exact match),
with ALPRO's towers and recipe (configs/videoqa/common.py) and a BERT-base-shaped decoder.

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
  beams = int(parts[1]) if len(parts) > 1 else 1
  if parts[0] in common.REAL:
    c = common.real(ml_collections.ConfigDict(), parts[0], train_sampling="headtail")
    c.model = ml_collections.ConfigDict(dict(
        name="mcg", vision=common.REAL_VISION, text=common.REAL_TEXT,
        decoder=common.REAL_DECODER, embed_dim=256))
  elif parts[0] in ("moving_shapes", "moving_shapes32"):
    long = parts[0] == "moving_shapes32"
    c = common.moving_shapes(ml_collections.ConfigDict(), train_sampling="headtail",
                             **(dict(frames=32, num_frames=8) if long else {}))
    c.model = ml_collections.ConfigDict(dict(
        name="mcg", vision=common.TINY_VIDEO_VISION if long else common.video_common.TINY_VISION,
        text=common.TINY_TEXT, decoder=common.TINY_DECODER, embed_dim=64))
  else:
    raise ValueError(f"Unknown video-QA dataset {parts[0]!r}; known: moving_shapes, "
                     f"moving_shapes32, {sorted(common.REAL)}.")
  c.task = ml_collections.ConfigDict(dict(
      name="videoqa_generation", answer_weight=1.0, icl_weight=1.0, tcl_weight=1.0,
      smoothing=0.1, beams=beams))
  return c

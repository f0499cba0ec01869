"""ALPRO's video-QA classification baseline: `classifier.py:<dataset>`.

Datasets: `moving_shapes` (embedded, open-ended), `moving_shapes_mc` (embedded, 5 candidates),
and from their official layouts (ml_pipelines/data/videoqa_sets.py) `msrvtt_qa`, `msvd_qa`,
`activitynet_qa` (open-ended: a class per answer of the training vocabulary) and `nextqa`
(multiple choice: each "[CLS] question [SEP] candidate [SEP]" scored, CE over the 5).

    python -m ml_pipelines.train --config=configs/videoqa/classifier.py:moving_shapes \
        --workdir=/tmp/vqa_cls

Answers are classes of the training answer vocabulary (ALPRO's `train_ans2label.json`), predicted
from the fused [CLS] token by Linear(D, 2D)-ReLU-Linear (models/videoqa.py). `moving_shapes` trains
tiny towers from scratch. `model.num_answers` is the classifier's width (ALPRO's `num_labels`,
1500 on MSRVTT-QA); the training answer vocabulary must fit in it (checked at the start).
"""
import ml_collections

from configs.videoqa import common


def get_config(arg=None):
  dataset = arg or "moving_shapes"
  if dataset == "moving_shapes_mc":
    c = common.moving_shapes(ml_collections.ConfigDict(), name="moving_shapes_mcqa")
    c.model = ml_collections.ConfigDict(dict(
        name="videoqa_multiple_choice", vision=common.video_common.TINY_VISION,
        text=dict(common.TINY_TEXT, max_position=24)))
    c.task = ml_collections.ConfigDict(dict(name="videoqa_multiple_choice"))
    return c
  if dataset in common.REAL:
    c = common.real(ml_collections.ConfigDict(), dataset)
    if dataset == "nextqa":
      c.model = ml_collections.ConfigDict(dict(name="videoqa_multiple_choice",
                                               vision=common.REAL_VISION, text=common.REAL_TEXT))
      c.task = ml_collections.ConfigDict(dict(name="videoqa_multiple_choice"))
      return c
    c.model = ml_collections.ConfigDict(dict(
        name="videoqa_classifier", vision=common.REAL_VISION, text=common.REAL_TEXT,
        num_answers=c.data.top_answers))
    c.task = ml_collections.ConfigDict(dict(name="videoqa_classification"))
    return c
  if dataset != "moving_shapes":
    raise ValueError(f"Unknown video-QA dataset {dataset!r}; known: moving_shapes, "
                     f"moving_shapes_mc, {sorted(common.REAL)}.")
  c = common.moving_shapes(ml_collections.ConfigDict())
  c.model = ml_collections.ConfigDict(dict(
      name="videoqa_classifier", vision=common.video_common.TINY_VISION, text=common.TINY_TEXT,
      num_answers=common.MS_ANSWERS))
  c.task = ml_collections.ConfigDict(dict(name="videoqa_classification"))
  return c

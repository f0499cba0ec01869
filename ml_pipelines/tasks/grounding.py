"""Spatio-temporal video grounding (STVGFormer, models/stvgformer.py) with TubeDETR's losses.

Loss, summed over the decoder layers (TubeDETR's auxiliary losses; weights from antoyang/TubeDETR
`main.py`): `box_l1_weight * L1 + giou_weight * (1 - GIoU)` over the frames of the ground-truth
tube and `sted_weight * KL` of the start/end distributions to Gaussian targets (sigma
`sted_sigma`), losses/video.py. Options: box_l1_weight (5), giou_weight (2), sted_weight (10),
sted_sigma (1).

Evaluation: every example of the eval split once (`env.predict`); the moment is decoded from the
last layer's start/end logits as TubeDETR does (`evaluators.grounding.decode_moment`), the boxes
are the last layer's; m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5 and gt_vIoU
(ml_pipelines/evaluators/grounding.py), over the evaluated frames.

Batch keys: `video`, `frame_mask`, `text`, `text_mask`, `boxes` [B, T, 4] (cx, cy, w, h),
`box_mask` [B, T], `start`, `end` (inclusive) [B].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from losses import video as vl
from ml_pipelines import tasks
from ml_pipelines.evaluators import grounding
from ml_pipelines.tasks.base import Task


@tasks.register("grounding")
class Grounding(Task):
  OPTIONS = frozenset({"box_l1_weight", "giou_weight", "sted_weight", "sted_sigma"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.w_l1, self.w_giou = float(t.get("box_l1_weight", 5.0)), float(t.get("giou_weight", 2.0))
    self.w_sted, self.sigma = float(t.get("sted_weight", 10.0)), float(t.get("sted_sigma", 1.0))

  def layer_losses(self, out, batch):
    """{name: [layers]} of every decoder layer's loss terms."""
    def one(boxes, sted):
      return {"l1": vl.box_l1(boxes, batch["boxes"], batch["box_mask"]),
              "giou": vl.box_giou(boxes, batch["boxes"], batch["box_mask"]),
              "sted": vl.sted_kl(sted, batch["start"], batch["end"], batch["frame_mask"],
                                 self.sigma)}
    return jax.vmap(one)(out["boxes"], out["sted"])

  def loss(self, model, batch, rng, extra, step):
    out = model(batch["video"], batch["frame_mask"], batch["text"], batch["text_mask"])
    terms = self.layer_losses(out, batch)
    loss = jnp.sum(self.w_l1 * terms["l1"] + self.w_giou * terms["giou"]
                   + self.w_sted * terms["sted"])
    return loss, {"metrics": {k: v[-1] for k, v in terms.items()}}

  @staticmethod
  def outputs(model, batch):
    out = model(batch["video"], batch["frame_mask"], batch["text"], batch["text_mask"])
    return {"pred_boxes": out["boxes"][-1], "sted": out["sted"][-1], "boxes": batch["boxes"],
            "frame_mask": batch["frame_mask"], "start": batch["start"], "end": batch["end"]}

  @staticmethod
  def per_video(o) -> list[dict[str, float]]:
    """Per-example tIoU / vIoU / gt_vIoU of `outputs` gathered over a split."""
    to_xyxy = lambda b: np.asarray(vl.cxcywh_to_xyxy(jnp.asarray(b)))  # noqa: E731
    pred, gt = to_xyxy(o["pred_boxes"]), to_xyxy(o["boxes"])
    rows = []
    for i in range(len(pred)):
      moment = grounding.decode_moment(o["sted"][i], o["frame_mask"][i])
      rows.append(grounding.video_metrics(pred[i], gt[i], moment,
                                          (int(o["start"][i]), int(o["end"][i]) + 1)))
    return rows

  def evaluate(self, env, state):
    o = env.predict(state, self.outputs, split=self.config.data.eval_split)
    return grounding.summary(self.per_video(o))

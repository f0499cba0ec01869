"""PVP (TAI++ / PVP, Xu et al., IJCAI 2024, arXiv 2405.06926; code Jinx630/Pseudo-Visual-Prompt):
trained on sentences with multi-hot labels, evaluated zero-shot by mAP on multi-label images.

`config.task.stage` (set per stage of `config.stages`):
- "pretrain" (stage 1, `pvp_pretrain`): `L_rank(z_ig) + 0.1 L_rank(z_il)`; train `image_prompts*`.
- "finetune" (stage 2, `pvp_finetune`): `L_rank(z_tg) + 0.01 L_rank(z_tl) + L_rank(z_ig) +
  L_rank(z_il) + (CE_sum(G) + CE_sum(G^T)) / 2`; train prompts and adapters (two optimizers:
  `optimizer.group_optimizers`).
- "text_only" (TaI-DPT's double text prompts, the baseline): `L_rank(z_tg) + 0.01 L_rank(z_tl)`.
Margin-1 ranking loss (`losses.pvp.ranking_loss`). Evaluation: mAP of the summed branch logits
(`models.pvp.PVP.scores`, as the code's evaluator) and of each branch, over `data.eval_split`
(`evaluators.multilabel.mean_average_precision`, the official non-interpolated AP).
"""
from __future__ import annotations

import numpy as np

from losses import pvp as L
from ml_pipelines import tasks
from ml_pipelines.evaluators.multilabel import mean_average_precision
from ml_pipelines.tasks.base import Task
from models.pvp import STAGES

BRANCHES = {"pretrain": ("image_global", "image_local"),
            "finetune": ("text_global", "text_local", "image_global", "image_local"),
            "text_only": ("text_global", "text_local")}


@tasks.register("pvp")
class PVPTask(Task):
  OPTIONS = frozenset({"stage", "margin"})

  def __init__(self, config):
    super().__init__(config)
    self.stage_name = config.task.get("stage", "pretrain")
    if self.stage_name not in STAGES:
      raise ValueError(f"task.stage {self.stage_name!r}: use one of {STAGES}.")
    self.margin = float(config.task.get("margin", 1.0))

  def loss(self, model, batch, rng, extra, step):
    tokens, y = batch["tokens"], batch["labels"]
    rank = lambda z: L.ranking_loss(z, y, self.margin)  # noqa: E731
    if self.stage_name == "pretrain":
      z_ig, z_il = model.pretrain_logits(tokens, rng)
      terms = {"rank_image_global": rank(z_ig), "rank_image_local": 0.1 * rank(z_il)}
    elif self.stage_name == "text_only":
      z_tg, z_tl = model.text_only_logits(tokens, rng)
      terms = {"rank_text_global": rank(z_tg), "rank_text_local": 0.01 * rank(z_tl)}
    else:
      z_tg, z_tl, z_ig, z_il, g = model.finetune_logits(tokens, rng)
      terms = {"rank_text_global": rank(z_tg), "rank_text_local": 0.01 * rank(z_tl),
               "rank_image_global": rank(z_ig), "rank_image_local": rank(z_il),
               "alignment": L.alignment_loss(g)}
    return sum(terms.values()), {"metrics": terms}

  def _branch_scores(self, model, batch):
    scores = model.branch_scores(batch["image"], self.stage_name)
    return {**dict(zip(BRANCHES[self.stage_name], scores)), "labels": batch["labels"]}

  def evaluate(self, env, state):
    out = env.predict(state, self._branch_scores, split=self.config.data.eval_split)
    labels = out["labels"]
    branches = [out[b] for b in BRANCHES[self.stage_name]]
    metrics = {"mAP": mean_average_precision(labels, np.sum(branches, axis=0))}
    for name, scores in zip(BRANCHES[self.stage_name], branches):
      metrics[f"mAP_{name}"] = mean_average_precision(labels, scores)
    return metrics

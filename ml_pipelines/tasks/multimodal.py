"""Audio-visual classification under modality imbalance: one task for every method.

The fused cross-entropy (OGM-GE, Peng et al., CVPR 2022, Eq. 1) is the loss of vanilla, OGM-GE,
AMSS(+) and AGM, whose work happens in the optimizer (optim/): the task passes what
`optim/_multimodal.py` lists in `tx_args` (modality_logits, labels, modality_features; mie_inputs
for MIE) and `grad_terms` for MMPareto. Loss-side methods are options:

- unimodal_loss_weight w: `L = CE(fused) + w * sum_m CE(m)` (MMPareto's `L_mm + sum_u L_u` with w=1);
- grad_terms: name each unimodal CE in `aux["grad_terms"]` (MMPareto);
- pmr_alpha > 0: PMR (Fan et al., CVPR 2023, Eqs. 3-9) prototypical CE on the slower modality;
  prototypes live in `extra` and follow each batch's class means with momentum `pmr_momentum` (the
  official code recomputes them once per epoch over the training set; a per-batch EMA here);
- gblending_weights (audio, visual, fused): G-Blending (Wang et al., CVPR 2020, Eq. 4) weighted sum of
  the heads' losses, with weights fixed in the config (the per-super-epoch re-estimation of Eq. 6,
  `losses.balancing.gblend_weights`, is not run by this task);
- mie_stage_steps "n1,n2,...": MIE/IGM (arXiv 2407.04587) alternating unimodal stages: only the current
  modality's head CE on mixup inputs (Beta(mie_mixup_alpha)) is trained; prediction is the mean of the
  heads' softmax outputs. Needs `model.modality_heads=True`.

Batch keys: `audio` [B, F, T, 1], `visual` [B, T, H, W, 3], `label` [B].
evaluate: `accuracy` (fused), `audio_accuracy`, `visual_accuracy` (argmax of modality_logits), `loss`.
"""
from __future__ import annotations

import difflib

import jax
import jax.numpy as jnp
import numpy as np

from losses import balancing
from losses import multimodal as mml
from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task
from optim import mie as mie_lib
from optim import paths as paths_lib

OPTIONS = {"name", "unimodal_loss_weight", "grad_terms", "pmr_alpha", "pmr_momentum",
           "gblending_weights", "mie_stage_steps", "mie_mixup_alpha"}
MODALITIES = ("audio", "visual")


@tasks.register("multimodal")
class Multimodal(Task):

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    unknown = set(t.keys()) - OPTIONS
    if unknown:
      raise KeyError("; ".join(
          f"Unknown task option {k!r}. Did you mean {difflib.get_close_matches(k, OPTIONS)}?"
          for k in sorted(unknown)))
    self.uni_w = float(t.get("unimodal_loss_weight", 0.0))
    self.grad_terms = bool(t.get("grad_terms", False))
    self.pmr_alpha = float(t.get("pmr_alpha", 0.0))
    self.pmr_momentum = float(t.get("pmr_momentum", 0.2))
    gw = t.get("gblending_weights", None)
    self.gblend = None if gw is None else jnp.asarray(tuple(gw), jnp.float32)
    stages = t.get("mie_stage_steps", "")
    self.mie_steps = mie_lib.parse_steps(stages) if stages else ()
    self.mie_alpha = float(t.get("mie_mixup_alpha", 1.0))
    self.num_classes = int(config.model.num_classes)

  # --- state -----------------------------------------------------------------------------------
  def init_extra(self, env, rng, params):
    if not self.pmr_alpha:
      return None
    # the feature width D is the input width of the fusion layer ([a; v] for concat: 2 D)
    shapes = {paths_lib.path_str(p): leaf.shape
              for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    d = (shapes["fusion/fc_out/kernel"][0] // 2 if "fusion/fc_out/kernel" in shapes and
         "fusion/fc/kernel" not in shapes and "fusion/fc_x/kernel" not in shapes
         else shapes.get("fusion/fc_x/kernel", shapes.get("fusion/fc/kernel"))[0])
    return {m: jnp.zeros((self.num_classes, d), jnp.float32) for m in MODALITIES}

  # --- training --------------------------------------------------------------------------------
  def _mie_loss(self, model, batch, rng, step):
    labels = batch["label"]
    audio, perm, lam = mml.mixup(rng, batch["audio"], self.mie_alpha)
    visual = (lam * batch["visual"] + (1 - lam) * batch["visual"][perm]).astype(batch["visual"].dtype)
    out = model(audio, visual)
    per = {m: jnp.mean(mml.mixup_cross_entropy(out["modality_logits"][m], labels, perm, lam))
           for m in MODALITIES}
    cur = mie_lib.modality_index(step, self.mie_steps, len(MODALITIES))
    loss = jnp.where(cur == 0, per["audio"], per["visual"])
    metrics = {"stage_modality": cur.astype(jnp.float32),
               **{f"{m}_loss": per[m] for m in MODALITIES}}
    return loss, out, metrics

  def loss(self, model, batch, rng, extra, step):
    labels = batch["label"]
    aux = {}
    if self.mie_steps:
      loss, out, metrics = self._mie_loss(model, batch, rng, step)
    else:
      out = model(batch["audio"], batch["visual"])
      fused = jnp.mean(mml.cross_entropy(out["logits"], labels))
      uni = mml.modality_cross_entropy(out["modality_logits"], labels)
      metrics = {"fused_loss": fused, **{f"{m}_loss": l for m, l in uni.items()}}
      if self.gblend is not None:
        loss = balancing.gblend_loss(jnp.stack([uni["audio"], uni["visual"], fused]), self.gblend)
      else:
        loss = fused + self.uni_w * sum(uni.values())
      if self.grad_terms:
        aux["grad_terms"] = uni
      if self.pmr_alpha:
        feats = out["features"]
        protos = {m: balancing.class_prototypes(jax.lax.stop_gradient(feats[m]), labels,
                                                self.num_classes, extra[m], self.pmr_momentum)
                  for m in MODALITIES}
        reg, coef = balancing.pmr_regularizer(feats, protos, labels, self.pmr_alpha)
        loss = loss + reg
        metrics.update(pmr_audio_coef=coef[0], pmr_visual_coef=coef[1])
        aux["extra"] = protos
    logits = out["modality_logits"]
    metrics["accuracy"] = jnp.mean(jnp.argmax(self._predict(out), -1) == labels)
    tx_args = {"modality_logits": {m: jax.lax.stop_gradient(l) for m, l in logits.items()},
               "labels": labels,
               "modality_features": {m: jax.lax.stop_gradient(f) for m, f in out["features"].items()}}
    if self.mie_steps:
      tx_args["mie_inputs"] = {k: jax.lax.stop_gradient(v) for k, v in out["head_inputs"].items()}
    aux.update(metrics=metrics, tx_args=tx_args)
    return loss, aux

  # --- evaluation ------------------------------------------------------------------------------
  def _predict(self, out):
    if self.mie_steps:  # MIE inference: mean of the unimodal softmax outputs
      return sum(jax.nn.softmax(out["modality_logits"][m].astype(jnp.float32)) for m in MODALITIES)
    return out["logits"]

  def eval_metrics(self, model, batch):
    labels = batch["label"]
    out = model(batch["audio"], batch["visual"])
    res = {"loss": mml.cross_entropy(out["logits"], labels),
           "accuracy": (jnp.argmax(self._predict(out), -1) == labels).astype(jnp.float32)}
    for m in MODALITIES:
      res[f"{m}_accuracy"] = (jnp.argmax(out["modality_logits"][m], -1) == labels
                              ).astype(jnp.float32)
    return res

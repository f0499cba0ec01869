"""Class-imbalanced classification: the two-stage recipe with metric learning (Zeng et al., arXiv
2207.06975; no public code, the paper's text was not reachable: the formulation below is the
[inferred] one, built from the abstract and the group's PCCT paper).

Stage "features": ``L = CE(f(x), y) + metric_weight * L_metric(z(x), y)`` with z the L2-normalised
pooled feature and L_metric one of `losses.metric_learning` (batch-hard triplet, class-centre
triplet, supervised contrastive; `metric="none"` is plain CE), optionally with class-balanced
re-weighting of the CE (``w_c = N / (C n_c)``: the "CE + re-weighting" baseline).
Stage "classifier" (cRT, Kang et al., ICLR 2020, "Decoupling Representation and Classifier"): the
classifier is re-initialised at the stage start and trained alone (the stage's `trainable`) on
class-balanced batches (sampler `class_balanced`). Evaluation may post-process the classifier:
tau-normalisation (``W_c / |W_c|^tau``, Kang et al. 2020 Sec. 4) or post-hoc logit adjustment
(``logits - tau log prior``, Menon et al., ICLR 2021, Eq. 9).
Metrics (`evaluators.classification`): accuracy, macro-F1, mean class recall, head / tail recall.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import models
from losses import classification as cls
from losses import metric_learning
from ml_pipelines import tasks
from ml_pipelines.evaluators import classification as cls_eval
from ml_pipelines.tasks.base import Task
from ml_pipelines.tasks.continual import _labels, replace_variables

METRICS = ("none", "batch_hard_triplet", "class_center_triplet", "supervised_contrastive")


@tasks.register("two_stage_metric")
class TwoStageMetric(Task):
  """Options: num_classes, phase ("features" | "classifier"), metric, metric_weight, margin,
  temperature, reweight (class-balanced CE weights), adjust ("none" | "tau_norm" |
  "logit_adjust"), tau, tail_classes, image_key, label_key."""
  OPTIONS = frozenset({"num_classes", "phase", "metric", "metric_weight", "margin", "temperature",
                       "reweight", "adjust", "tau", "tail_classes", "image_key", "label_key"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.num_classes = int(t.num_classes)
    self.phase = t.get("phase", "features")
    self.metric = t.get("metric", "none")
    if self.phase not in ("features", "classifier"):
      raise ValueError(f"phase must be 'features' or 'classifier', got {self.phase!r}.")
    if self.metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}.")
    self.metric_weight = float(t.get("metric_weight", 1.0))
    self.margin = float(t.get("margin", 0.3))
    self.temperature = float(t.get("temperature", 0.1))
    self.reweight = bool(t.get("reweight", False))
    self.adjust = t.get("adjust", "none")
    if self.adjust not in ("none", "tau_norm", "logit_adjust"):
      raise ValueError(f"adjust must be none, tau_norm or logit_adjust, got {self.adjust!r}.")
    self.tau = float(t.get("tau", 1.0))
    tail = t.get("tail_classes", None)
    self.tail_classes = None if tail is None else tuple(int(c) for c in tail)
    self.image_key = t.get("image_key", "image")
    self.label_key = t.get("label_key", "label")
    self._counts = None

  def class_counts(self, env) -> np.ndarray:
    if self._counts is None:
      labels = _labels(env.dataset(self.config.data.train_split).source, self.label_key)
      self._counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
    return self._counts

  def init_extra(self, env, rng, params):
    """Per-class CE weights N / (C n_c) (ones without `reweight`) and the log class prior."""
    counts = self.class_counts(env)
    weights = counts.sum() / (self.num_classes * np.maximum(counts, 1)) if self.reweight else \
        np.ones(self.num_classes)
    return {"class_weights": jnp.asarray(weights, jnp.float32),
            "log_prior": jnp.asarray(np.log(np.maximum(counts, 1) / counts.sum()), jnp.float32)}

  def start_stage(self, env, state, stage):
    if self.phase == "classifier" and stage.index > 0:  # cRT: a fresh classifier
      fresh = models.build(self.config.model, seed=self.config.seed + 1 + stage.index)
      kernel, bias = np.asarray(fresh.fc.kernel.value), np.asarray(fresh.fc.bias.value)

      def reinit(tree):
        tree = jax.tree_util.tree_map(np.copy, tree)
        tree["fc"] = {"kernel": kernel, "bias": bias}
        return tree
      state = replace_variables(state, reinit)
    return state

  def metric_loss(self, feats, labels):
    z = feats / jnp.maximum(jnp.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)
    if self.metric == "batch_hard_triplet":
      return metric_learning.batch_hard_triplet(z, labels, self.margin)[0]
    if self.metric == "class_center_triplet":
      return metric_learning.class_center_triplet(z, labels, self.num_classes, self.margin)
    return metric_learning.supervised_contrastive(z, labels, self.temperature)

  def loss(self, model, batch, rng, extra, step):
    labels = batch[self.label_key]
    logits, feats = model(batch[self.image_key])
    ce_each = cls.cross_entropy(logits, labels)
    w = extra["class_weights"][labels]
    ce = jnp.sum(w * ce_each) / jnp.sum(w)
    metrics = {"ce": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
    loss = ce
    if self.phase == "features" and self.metric != "none":
      m = self.metric_loss(feats, labels)
      loss = loss + self.metric_weight * m
      metrics["metric"] = m
    return loss, {"metrics": metrics}

  def eval_logits(self, model, batch):
    logits, feats = model(batch[self.image_key])
    if self.adjust == "tau_norm":
      w = model.fc.kernel.value
      w = w / jnp.linalg.norm(w, axis=0, keepdims=True) ** self.tau
      logits = feats @ w  # Kang et al.'s tau-normalised classifier has no bias
    return logits

  def _predict(self, model, batch):
    return {"logits": self.eval_logits(model, batch), "label": batch[self.label_key]}

  def evaluate(self, env, state):
    out = env.predict(state, self._predict, self.config.data.eval_split)
    logits = out["logits"]
    if self.adjust == "logit_adjust":
      logits = logits - self.tau * np.asarray(state["extra"]["log_prior"])[None]
    return cls_eval.classification_report(out["label"], np.argmax(logits, 1), self.num_classes,
                                          self.tail_classes)

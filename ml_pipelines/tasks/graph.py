"""Graph tasks: node classification on one whole graph, graph classification on padded graphs.

- `node_classification`: the dataset's examples are node ids and `info["graph"]` the whole graph
  (`data/graphs.py`, layout a). `constants` hands the graph to the trainer, which keeps it on the
  devices once and merges it into every batch as `batch["graph"]`; each step runs the model on the
  whole graph and takes the cross-entropy of the batch's nodes (the official GCN code's masked
  full-batch loss when the batch holds every training node).
- `graph_classification`: each example is a padded graph (layout b); the model maps the batch of
  graphs to logits `[B, C]`.
Both report loss and accuracy; option `metric="roc_auc"` (two classes only) adds the ROC-AUC of the
class-1 score over the evaluation split, the metric of the binary Yandex heterophily sets
(Platonov et al., ICLR 2023: minesweeper, tolokers, questions) and of the N² paper on them. The
score is `logit_1 - logit_0`, which orders examples as the official code's class-1 probability.
- `graph_multilabel`: padded graphs with `T` binary labels each, NaN where not measured
  (ogbg-molpcba's 128 assays). Loss: binary cross-entropy with logits averaged over the batch's
  labelled entries (the official N² code's `output[is_labeled]` before `BCEWithLogitsLoss`).
  Metric `ap`: OGB's, average precision per task over its labelled graphs, averaged over the tasks
  with both classes (`evaluators/multitask.py`). The official N² code instead pools every labelled
  entry of the split into one AP, which is not the OGB leaderboard metric.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from ml_pipelines import tasks
from ml_pipelines.evaluators.multitask import average_precision_over_tasks, roc_auc_over_tasks
from ml_pipelines.tasks.base import Task

METRICS = ("accuracy", "roc_auc")


class _Classification(Task):
  """Cross-entropy of `self.logits(model, batch)` (each subclass's own) against `batch["label"]`."""
  OPTIONS = frozenset({"metric"})

  def __init__(self, config):
    super().__init__(config)
    self.metric = config.task.get("metric", "accuracy")
    if self.metric not in METRICS:
      raise ValueError(f"Unknown metric {self.metric!r}; use one of {', '.join(METRICS)}.")
    if self.metric == "roc_auc" and config.model.num_classes != 2:
      raise ValueError(f"metric='roc_auc' scores the class-1 logit of a binary task; this model "
                       f"has {config.model.num_classes} classes.")

  def _metrics(self, model, batch):
    logits = self.logits(model, batch)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = jnp.argmax(logits, -1) == batch["label"]
    return {"loss": loss, "accuracy": correct.astype(jnp.float32), "logits": logits}

  def loss(self, model, batch, rng, extra, step):
    m = self._metrics(model, batch)
    return jnp.mean(m["loss"]), {"metrics": {"accuracy": jnp.mean(m["accuracy"])}}

  def eval_metrics(self, model, batch):
    m = self._metrics(model, batch)
    m["label"] = batch["label"]
    return m

  def evaluate(self, env, state):
    out = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    result = {k: float(np.mean(out[k])) for k in ("loss", "accuracy")}
    if self.metric == "roc_auc":
      score = out["logits"][:, 1] - out["logits"][:, 0]
      result["roc_auc"] = roc_auc_over_tasks(out["label"], score)
    return result


@tasks.register("node_classification")
class NodeClassification(_Classification):

  def constants(self, env):
    graph = env.dataset(self.config.data.train_split).info["graph"]
    return {"graph": {k: np.asarray(v) for k, v in graph.items()}}

  def logits(self, model, batch):
    return model(batch["graph"])[batch["node"]]


@tasks.register("graph_classification")
class GraphClassification(_Classification):

  def logits(self, model, batch):
    return model(batch)


def masked_binary_cross_entropy(logits, labels):
  """Per-entry `BCE(logits, labels)` `[B, T]`, 0 where the label is NaN; and the labelled mask."""
  known = ~jnp.isnan(labels)
  bce = optax.sigmoid_binary_cross_entropy(logits, jnp.where(known, labels, 0.0))
  return jnp.where(known, bce, 0.0), known


@tasks.register("graph_multilabel")
class GraphMultilabel(Task):
  """Masked binary cross-entropy on padded graphs with NaN-marked missing labels; OGB's AP."""

  def loss(self, model, batch, rng, extra, step):
    bce, known = masked_binary_cross_entropy(model(batch), batch["label"])
    return jnp.sum(bce) / jnp.maximum(jnp.sum(known), 1), {}

  def eval_metrics(self, model, batch):
    return {"logits": model(batch), "label": batch["label"]}

  def evaluate(self, env, state):
    out = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    bce, known = masked_binary_cross_entropy(out["logits"], out["label"])
    return {"loss": float(np.sum(bce) / max(np.sum(known), 1)),
            "ap": average_precision_over_tasks(out["label"], out["logits"])}

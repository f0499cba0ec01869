"""Graph tasks: node classification on one whole graph, graph classification on padded graphs.

- `node_classification`: the dataset's examples are node ids and `info["graph"]` the whole graph
  (`data/graphs.py`, layout a). `constants` hands the graph to the trainer, which keeps it on the
  devices once and merges it into every batch as `batch["graph"]`; each step runs the model on the
  whole graph and takes the cross-entropy of the batch's nodes (the official GCN code's masked
  full-batch loss when the batch holds every training node).
- `graph_classification`: each example is a padded graph (layout b); the model maps the batch of
  graphs to logits `[B, C]`.
Metrics: loss and accuracy, training and per evaluation example.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task


class _Classification(Task):
  """Cross-entropy of `self.logits(model, batch)` (each subclass's own) against `batch["label"]`."""

  def _metrics(self, model, batch):
    logits = self.logits(model, batch)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = jnp.argmax(logits, -1) == batch["label"]
    return {"loss": loss, "accuracy": correct.astype(jnp.float32)}

  def loss(self, model, batch, rng, extra, step):
    m = self._metrics(model, batch)
    return jnp.mean(m["loss"]), {"metrics": {"accuracy": jnp.mean(m["accuracy"])}}

  def eval_metrics(self, model, batch):
    return self._metrics(model, batch)


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

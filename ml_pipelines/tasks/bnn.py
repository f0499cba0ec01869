"""Binary-network classification with a scheduled sign estimator (ReSTE, Wu et al. ICCV 2023).

The task passes the training progress p = step / total_steps to the model (`model(x, p)`); each
binary layer maps it to its estimator's parameter (ReSTE: o = 1 + (o_end - 1)(1 - cos(pi/2 p)),
models/binary.py). The official code updates o once per epoch; we update it every step (the same
cosine, sampled finer). `train/o` logs the value in use.

`evaluate` adds the paper's two indicators (Sec. 4.3) to the usual loss / accuracy:
  eval/estimating_error    sum over binary layers of ||surrogate(w) - sign(w)||_2 at the current p;
  eval/gradient_stability  sum over binary layers of Var(|dL/dw|), the gradient of the training loss
                           (train-mode model) on the first `indicator_examples` training examples.

Options (config.task): label_smoothing, indicator_examples (default 256), image_key, label_key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
from losses import classification as cls
from ml_pipelines import tasks
from ml_pipelines.tasks.classification import Classification
from models import binary



def progress(step, total_steps: int):
  """Training progress in [0, 1]."""
  return jnp.clip(jnp.asarray(step, jnp.float32) / max(int(total_steps), 1), 0.0, 1.0)


@tasks.register("bnn_classification")
class BnnClassification(Classification):
  """Classification's options (no mixing) and `eval_metrics`; the model also takes p."""
  OPTIONS = frozenset({"label_smoothing", "indicator_examples", "image_key", "label_key"})

  def __init__(self, config):
    super().__init__(config)
    self.indicator_examples = int(config.task.get("indicator_examples", 256))
    self._indicator_fn = None

  def _ce(self, logits, labels):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.smoothing)
    return jnp.mean(cls.soft_cross_entropy(logits, targets))

  def loss(self, model, batch, rng, extra, step):
    p = progress(step, self.config.total_steps)
    logits = model(batch[self.image_key], p)
    labels = batch[self.label_key]
    o = binary.estimator_param(model.estimator, p, model.o_end)
    return self._ce(logits, labels), {"metrics": {
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels), "o": o}}

  def _indicator_batch(self, env):
    ds = env.dataset(self.config.data.train_split)
    n = min(self.indicator_examples, len(ds.source))
    examples = [ds.source[i] for i in range(n)]
    if ds.eval_preprocess is not None:
      examples = [ds.eval_preprocess(e) for e in examples]
    return (np.stack([e[self.image_key] for e in examples]).astype(np.float32),
            np.stack([e[self.label_key] for e in examples]).astype(np.int32))

  def _build_indicator_fn(self):
    abstract = nnx.eval_shape(lambda: models.build(self.config.model))
    abstract.train()
    graphdef = nnx.graphdef(abstract)
    paths = list(binary.binary_layers(abstract))

    def fn(params, rest, images, labels, p):
      def loss_fn(prm):
        return self._ce(nnx.merge(graphdef, prm, rest)(images, p), labels)
      grads = jax.grad(loss_fn)(params)
      kernel_grads = []
      for path in paths:
        g = grads
        for k in (*path, "kernel"):
          g = g[k]
        kernel_grads.append(g)
      model = nnx.merge(graphdef, params, rest)
      return binary.estimating_error(model, p), binary.gradient_stability(kernel_grads)
    return jax.jit(fn)

  def evaluate(self, env, state):
    out = super().evaluate(env, state)
    if self._indicator_fn is None:
      self._indicator_fn = self._build_indicator_fn()
    images, labels = self._indicator_batch(env)
    p = progress(int(state["step"]), self.config.total_steps)
    err, stab = self._indicator_fn(state["params"], state["rest"], images, labels, p)
    out["estimating_error"] = float(err)
    out["gradient_stability"] = float(stab)
    return out

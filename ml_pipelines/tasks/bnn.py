"""Binary-network classification with a scheduled sign estimator (ReSTE, Wu et al. ICCV 2023).

The task computes the estimator's parameter from the training progress p and passes it to the model
(`model(x, o)`; ReSTE: o = 1 + (o_end - 1)(1 - cos(pi/2 p)), models/binary.py). With
`schedule_steps_per_epoch` = n > 0, p = epoch / epochs (epoch = floor(step / n), epochs =
total_steps / n): o changes once per epoch, as the official code (DravenALG/ReSTE main.py
`ReSTE(epoch)`, `ratio = epoch / args.epochs`); with 0, p = step / total_steps (o changes every step). `train/o`
logs the value in use.

`evaluate` adds the paper's two indicators (Sec. 4.3) to the usual loss / accuracy:
  eval/estimating_error    sum over binary layers of ||surrogate(w) - sign(w)||_2 at o_end (as the
                           official `get_fitting_error(model, args.o_end)`);
  eval/gradient_stability  sum over binary layers of Var(|dL/dw|) (unbiased, torch.var), the
                           gradient of the training loss (train-mode model, current o) on the first
                           `indicator_examples` training examples.

Options (config.task): label_smoothing, indicator_examples (default 256), schedule_steps_per_epoch
(default 0), image_key, label_key.
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


def progress(step, total_steps: int, steps_per_epoch: int = 0):
  """Training progress in [0, 1]: step / total_steps, or with `steps_per_epoch` > 0 the official
  per-epoch value epoch / epochs (constant within an epoch)."""
  step = jnp.asarray(step, jnp.float32)
  if steps_per_epoch > 0:
    step = jnp.floor(step / steps_per_epoch) * steps_per_epoch
  return jnp.clip(step / max(int(total_steps), 1), 0.0, 1.0)


@tasks.register("bnn_classification")
class BnnClassification(Classification):
  """Classification's options (no mixing) and `eval_metrics`; the model also takes o."""
  OPTIONS = frozenset({"label_smoothing", "indicator_examples", "schedule_steps_per_epoch",
                       "image_key", "label_key"})

  def __init__(self, config):
    super().__init__(config)
    self.indicator_examples = int(config.task.get("indicator_examples", 256))
    self.steps_per_epoch = int(config.task.get("schedule_steps_per_epoch", 0))
    self._indicator_fn = None

  def _ce(self, logits, labels):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.smoothing)
    return jnp.mean(cls.soft_cross_entropy(logits, targets))

  def estimator_param(self, model, step):
    """The estimator parameter (o for reste) at `step` under the task's schedule."""
    p = progress(step, self.config.total_steps, self.steps_per_epoch)
    return binary.estimator_param(model.estimator, p, model.o_end)

  def loss(self, model, batch, rng, extra, step):
    o = self.estimator_param(model, step)
    logits = model(batch[self.image_key], o)
    labels = batch[self.label_key]
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

    def fn(params, rest, images, labels, step):
      o = self.estimator_param(abstract, step)

      def loss_fn(prm):
        return self._ce(nnx.merge(graphdef, prm, rest)(images, o), labels)
      grads = jax.grad(loss_fn)(params)
      kernel_grads = []
      for path in paths:
        g = grads
        for k in (*path, "kernel"):
          g = g[k]
        kernel_grads.append(g)
      model = nnx.merge(graphdef, params, rest)
      return binary.estimating_error(model), binary.gradient_stability(kernel_grads)
    return jax.jit(fn)

  def evaluate(self, env, state):
    out = super().evaluate(env, state)
    if self._indicator_fn is None:
      self._indicator_fn = self._build_indicator_fn()
    images, labels = self._indicator_batch(env)
    params, rest = env.variables(state)
    err, stab = self._indicator_fn(params, rest, images, labels,
                                   jnp.asarray(state["step"], jnp.int32))
    out["estimating_error"] = float(err)
    out["gradient_stability"] = float(stab)
    return out

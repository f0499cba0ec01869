"""FreeMatch per head with DSA's ensemble pseudo-labels (Qi2019KB/DSA,
`projects/AdaptorCBE/classification/SSL/DSA_FreeMatch.py`; FreeMatch: Wang et al. 2023).

A batch holds B labeled rows then mu B unlabeled rows (`labeled_unlabeled` sampler, `ssl` datasets:
`image` is the weak view, `image_strong` the strong one). One forward pass over
[labeled weak, unlabeled weak, unlabeled strong] gives logits [S, N, K] for S heads (a single-head
model's [N, K] counts as S = 1). Per step, with b the blank head ((step mod steps_per_epoch) mod S,
skipped in L_x and L_ens when `blank_heads` = 1 and S > 1):
  L_x   = mean_{s != b} CE(labeled logits^s, y)
  per head s: FreeMatch state (tau, p, hist) updated on the weak logits, mask m^s (threshold
        alpha tau p_c / max p), fairness L_saf^s on the masked strong logits
  t, keep = ensemble pseudo-label (argmax of the summed head probabilities) kept where at least
        count_thr(epoch) heads are confident; count_thr rises from `count_thr_min` to
        `count_thr_max` over `count_thr_rampup` epochs of `steps_per_epoch` steps
  L_ens = mean_{s != b} mean_u keep CE(strong logits^s, t)
  L_mc  = mean over heads with a defined correlation of 1 - pearson(p_y (y + 1), y + 1)
  loss  = L_x for the first `warmup_steps` steps, then
          L_x + lambda_saf mean_s L_saf^s + lambda_ens L_ens + lambda_mc L_mc.
The FreeMatch state lives in the task's `extra` (checkpointed). Single-head FreeMatch is S = 1
with count_thr 1, alpha 1 and lambda_mc 0: L_ens is then FreeMatch's unlabeled loss.

Evaluation (model in eval mode; the trainer adds `ema_` copies with `ema_decay`): per-head
accuracy, the mean-logit ensemble, the code's count-weighted ensemble (per evaluation batch, weights
softmax_s(#{b: argmax logits^s_b = argmax mean logits_b}) over that batch's real rows, so it
depends on `eval_batch_size`: 32 in the code) and the pairwise head disagreement. The code's second
ensemble, weighted by each head's accuracy on the test batch, reads test labels and is not
reported.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import models
from losses import ssl
from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task


def head_logits(model, images):
  out = model(images)
  return out[None] if out.ndim == 2 else out


@tasks.register("freematch")
class FreeMatch(Task):
  OPTIONS = frozenset({"threshold_ema", "taut_alpha", "lambda_saf", "lambda_ens", "lambda_mc",
                       "blank_heads", "count_thr_min", "count_thr_max", "count_thr_rampup",
                       "steps_per_epoch", "warmup_steps"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.decay = float(t.get("threshold_ema", 0.999))
    self.alpha = float(t.get("taut_alpha", 0.9))
    self.lambda_saf = float(t.get("lambda_saf", 0.05))
    self.lambda_ens = float(t.get("lambda_ens", 1.0))
    self.lambda_mc = float(t.get("lambda_mc", 1.0))
    self.blank_heads = int(t.get("blank_heads", 1))
    self.count_thr = (int(t.get("count_thr_min", 2)), int(t.get("count_thr_max", 4)),
                      int(t.get("count_thr_rampup", 50)))
    self.steps_per_epoch = int(t.get("steps_per_epoch", 1024))
    self.warmup_steps = int(t.get("warmup_steps", 30))
    sampler = dict(config.data.get("sampler", {}))
    if sampler.get("name") != "labeled_unlabeled":
      raise ValueError("The freematch task needs config.data.sampler = {name: 'labeled_unlabeled', "
                       "ratio: mu, num_labeled or labeled_file}.")
    self.labeled_batch = config.batch_size // (1 + int(sampler.get("ratio", 7)))

  def init_extra(self, env, rng, params):
    ds = env.dataset(self.config.data.train_split)
    shape = ds.element_spec["image"][0]
    abstract = jax.eval_shape(lambda: head_logits(models.build(self.config.model),
                                                  jnp.zeros((2, *shape), jnp.float32)))
    return ssl.freematch_init(ds.info["num_classes"], abstract.shape[0])

  def _blank_weights(self, step, heads: int):
    if not self.blank_heads or heads == 1:
      return jnp.ones((heads,), jnp.float32)
    blank = (step % self.steps_per_epoch) % heads
    return 1.0 - jax.nn.one_hot(blank, heads, dtype=jnp.float32)

  def loss(self, model, batch, rng, extra, step):
    b = self.labeled_batch
    x, u_w, u_s = batch["image"][:b], batch["image"][b:], batch["image_strong"][b:]
    y, y_u = batch["label"][:b], batch["label"][b:]
    logits = head_logits(model, jnp.concatenate([x, u_w, u_s]))
    n_u = u_w.shape[0]
    lx, luw, lus = logits[:, :b], logits[:, b:b + n_u], logits[:, b + n_u:]
    heads = logits.shape[0]
    w = self._blank_weights(step, heads)

    ce = jax.vmap(lambda lg: ssl.masked_cross_entropy(lg, y, jnp.ones_like(y, jnp.float32)))(lx)
    loss_x = jnp.sum(w * ce) / jnp.sum(w)

    tau, p, hist = jax.vmap(ssl.freematch_update, in_axes=(0, 0, 0, 0, None))(
        luw, extra["tau"], extra["p"], extra["hist"], self.decay)
    masks, pseudo = jax.vmap(ssl.freematch_mask, in_axes=(0, 0, 0, None))(luw, tau, p, self.alpha)
    loss_saf = jnp.mean(jax.vmap(ssl.fairness_loss)(masks, lus, p, hist))

    epoch = step // self.steps_per_epoch
    count_thr = ssl.count_threshold(epoch, *self.count_thr)
    targets, keep = ssl.ensemble_pseudo_labels(luw, masks, count_thr)
    ens = jax.vmap(lambda lg: ssl.masked_cross_entropy(lg, targets, keep))(lus)
    loss_ens = jnp.sum(w * ens) / jnp.sum(w)

    corr = jax.vmap(ssl.max_correlation, in_axes=(0, None))(lx, y)
    defined = ~jnp.isnan(corr)
    loss_mc = jnp.sum(jnp.where(defined, 1.0 - corr, 0.0)) / jnp.maximum(jnp.sum(defined), 1)

    full = (loss_x + self.lambda_saf * loss_saf + self.lambda_ens * loss_ens
            + self.lambda_mc * loss_mc)
    loss = jnp.where(step < self.warmup_steps, loss_x, full)
    correct = (targets == y_u).astype(jnp.float32)
    metrics = {"loss_x": loss_x, "loss_saf": loss_saf, "loss_ens": loss_ens, "loss_mc": loss_mc,
               "mask_rate": jnp.mean(keep), "head_mask_rate": jnp.mean(masks),
               "count_thr": count_thr.astype(jnp.float32), "tau": jnp.mean(tau),
               # pseudo-label accuracy on the kept samples (a diagnostic: labels never enter a loss)
               "pseudo_label_accuracy": jnp.sum(keep * correct) / jnp.maximum(jnp.sum(keep), 1),
               "labeled_accuracy": jnp.mean(jnp.argmax(lx, -1) == y[None])}
    head_correct = jnp.sum(masks * (pseudo == y_u[None]), 1) / jnp.maximum(jnp.sum(masks, 1), 1)
    metrics.update({f"pseudo_label_accuracy_head{s}": head_correct[s] for s in range(heads)})
    return loss, {"metrics": metrics, "extra": {"tau": tau, "p": p, "hist": hist}}

  def eval_metrics(self, model, batch):
    logits = head_logits(model, batch["image"])
    labels = batch["label"]
    preds = jnp.argmax(logits, -1)  # [S, B]
    out = {f"accuracy_head{s}": (preds[s] == labels).astype(jnp.float32)
           for s in range(logits.shape[0])}
    mean_pred = jnp.argmax(jnp.mean(logits, 0), -1)
    out["accuracy_mean_logit"] = (mean_pred == labels).astype(jnp.float32)
    real = (batch["mask"] if "mask" in batch else jnp.ones_like(labels, bool)).astype(jnp.float32)
    counts = jnp.sum((preds == mean_pred[None]) * real[None], axis=1)
    weighted = jnp.einsum("s,sbk->bk", jax.nn.softmax(counts), logits)
    out["accuracy_count_weighted"] = (jnp.argmax(weighted, -1) == labels).astype(jnp.float32)
    pairs = list(itertools.combinations(range(logits.shape[0]), 2))
    out["disagreement"] = (jnp.mean(jnp.stack([preds[i] != preds[j] for i, j in pairs]), 0)
                           if pairs else jnp.zeros_like(labels, jnp.float32))
    return out

  def evaluate(self, env, state):
    out = env.predict(state, self.eval_metrics, split=self.config.data.eval_split)
    metrics = {k: float(np.mean(v)) for k, v in out.items() if k != "index"}
    heads = [v for k, v in metrics.items() if k.startswith("accuracy_head")]
    metrics["accuracy_best_head"] = max(heads)
    metrics["accuracy_mean_head"] = float(np.mean(heads))
    return metrics

"""RCPMOD training and scoring (regularized contrastive partial multi-view outlier detection, ACM MM
2024, arXiv 2408.07819; official code 180400518/RCPMOD `model.py`, `run.py`), two views.

Per batch (z = encoder output, ẑ = z / ||z||, τ = 0.5), as the official training loop computes it:
  L = L_rec + w_con L_con + w_knn L_knn + w(epoch) (L_trip + L_uni)
- `L_rec`: per view, the per-sample summed squared error averaged over the samples having the view.
- `L_con`: NT-Xent of ẑ¹, ẑ² over the samples having both views; from epoch `impute_from` over the
  whole batch, a missing view's latent the mean encoding of its k neighbours' inputs. The current
  encodings of the memory rows join every anchor's negatives (outlier-aware NT-Xent).
- Memory: after each batch, the raw inputs of the `memory_ratio` share of samples with the lowest
  cross-view cosine similarity go into a FIFO of the last `memory_size` batches.
- `L_knn`: mean over j = 1..k of NT-Xent(ẑ¹ of the j-th view-1 neighbours, ẑ² of the j-th view-2
  neighbours).
- `L_trip` (per view, present samples): positive a random one of the k input-space neighbours
  (redrawn every epoch), negative the `neg_rank`-th latent neighbour (recomputed every
  `change_neg_epoch` epochs); `L_uni`: the KoLeo-style spreading term.
- `w(epoch)`: linear 0 -> `warmup_max` over 100 epochs, then `warmup_max` -> `w2` until
  `schedule_epoch`.
Latent kNN tables are recomputed every `change_knn_epoch` epochs (epoch 0 included, from the
untrained encoder). Tables, positives, negatives, the memory and the epoch live in the checkpointed
`extra`; `after_step` refreshes them at epoch boundaries.

Scores (`evaluate`): missing-view latents completed from the k neighbours, the attribute score
(normalised reconstruction errors), the contrastive score (per-sample NT-Xent over the whole set),
fused as `R_w minmax(attr) + minmax(contr)`; ROC-AUC against the injected outliers. `score` selects
`fused` (RCPMOD), `attribute` (reconstruction-only baseline) or `contrastive`.

Differences from the official code: batches follow the trainer's shuffled epochs (the official
order is one fixed `random_state=1` shuffle and keeps the last partial batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from losses import outlier as ol
from ml_pipelines import tasks
from ml_pipelines.data import multiview
from ml_pipelines.evaluators.outlier import roc_auc
from ml_pipelines.tasks.base import Task
from ml_pipelines.trainer import sharding
from models import rcpmod


def _normalise(z):
  return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _reconstruction_errors(ae, x):
  recon, z = ae(x)
  return z, jnp.sum((recon - x) ** 2, axis=-1)


def warmup_weight(epoch, warmup_max: float, w2: float, schedule_epoch: int):
  """The official schedule of the triplet + spreading weight."""
  epoch = jnp.asarray(epoch, jnp.float32)
  rising = warmup_max * epoch / 100.0
  after = warmup_max + (w2 - warmup_max) * (epoch - 100.0) / max(schedule_epoch - 100, 1)
  return jnp.where(epoch < 100, rising, jnp.minimum(after, w2) if w2 >= warmup_max
                   else jnp.maximum(after, w2))


@tasks.register("rcpmod")
class RCPMODTask(Task):
  OPTIONS = frozenset({"k", "pool", "temperature", "w_con", "w_knn", "w2", "warmup_max",
                       "schedule_epoch", "memory_size", "memory_ratio", "change_knn_epoch",
                       "change_neg_epoch", "impute_from", "neg_rank", "r_w", "score"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.k = int(t.get("k", 6))
    self.pool = t.get("pool", None)
    self.temperature = float(t.get("temperature", 0.5))
    self.w_con = float(t.get("w_con", 1.0))
    self.w_knn = float(t.get("w_knn", 1.0))
    self.w2 = float(t.get("w2", 0.2))
    self.warmup_max = float(t.get("warmup_max", 0.02))
    self.schedule_epoch = int(t.get("schedule_epoch", 1000))
    self.memory_size = int(t.get("memory_size", 5))
    self.memory_ratio = float(t.get("memory_ratio", 0.05))
    self.change_knn_epoch = int(t.get("change_knn_epoch", 50))
    self.change_neg_epoch = int(t.get("change_neg_epoch", 5))
    self.impute_from = int(t.get("impute_from", 50))
    self.neg_rank = int(t.get("neg_rank", 50))
    self.r_w = float(t.get("r_w", 0.25))
    self.score = t.get("score", "fused")
    if self.score not in ("fused", "attribute", "contrastive"):
      raise ValueError(f"score must be 'fused', 'attribute' or 'contrastive', not {self.score!r}.")
    self.memory_rows = (int(np.ceil(self.memory_ratio * config.batch_size)) if self.memory_size
                        else 0)

  # --- data ---------------------------------------------------------------------------------------
  def _arrays(self, env):
    source = env.dataset(self.config.data.train_split).source
    return {k: np.asarray(source.arrays[k]) for k in ("x1", "x2", "present1", "present2")}

  def constants(self, env):
    """The whole views: neighbours' and memory rows' inputs are read from them."""
    a = self._arrays(env)
    return {"all_x1": a["x1"], "all_x2": a["x2"]}

  def steps_per_epoch(self, env) -> int:
    return len(env.dataset(self.config.data.train_split).source) // self.config.batch_size

  def _tables(self, a, z1, z2, epoch: int, rng: np.random.Generator, previous=None):
    """Latent kNN tables (epoch % change_knn_epoch == 0), negatives (epoch % change_neg_epoch ==
    0) and positives (every epoch) for `epoch`; the rest kept from `previous`."""
    out = dict(previous or {})
    p1, p2 = a["present1"], a["present2"]
    if "knn1" not in out or epoch % self.change_knn_epoch == 0:
      out["knn1"], out["knn2"] = multiview.knn_tables(z1, z2, p1, p2, self.k, self.pool)
    if "neg1" not in out or epoch % self.change_neg_epoch == 0:
      pool = max(self.pool or 40, 2 * self.neg_rank)  # room for the missing views' borrowing
      n1, n2 = multiview.knn_tables(z1, z2, p1, p2, self.neg_rank, pool)
      out["neg1"], out["neg2"] = n1[:, -1], n2[:, -1]
    pick = rng.integers(0, self.k, (2, len(p1)))
    rows = np.arange(len(p1))
    out["pos1"], out["pos2"] = out["ori1"][rows, pick[0]], out["ori2"][rows, pick[1]]
    return {k: np.asarray(v, np.int32) for k, v in out.items()}

  def init_extra(self, env, rng, params):
    a = self._arrays(env)
    ori1, ori2 = multiview.knn_tables(a["x1"], a["x2"], a["present1"], a["present2"], self.k,
                                      self.pool)
    tables = self._tables(a, a["x1"], a["x2"], 0, self._rng(0), {"ori1": ori1, "ori2": ori2})
    m = max(self.memory_rows, 1)
    s = max(self.memory_size, 1)
    return {**{k: jnp.asarray(v) for k, v in tables.items()},
            "epoch": jnp.zeros((), jnp.int32),
            "memory1": jnp.zeros((s, m, a["x1"].shape[1]), jnp.float32),
            "memory2": jnp.zeros((s, m, a["x2"].shape[1]), jnp.float32),
            "memory_count": jnp.zeros((), jnp.int32), "memory_next": jnp.zeros((), jnp.int32)}

  def _rng(self, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(self.config.seed), 7, int(epoch)])

  # --- per-epoch refresh ----------------------------------------------------------------------
  @staticmethod
  def latents(model, batch):
    return {"z1": model.views[0].encode(batch["x1"]), "z2": model.views[1].encode(batch["x2"])}

  def _refresh(self, env, state, epoch: int):
    a = self._arrays(env)
    z = env.predict(state, self.latents, split=self.config.data.train_split)
    order = np.argsort(z["index"])
    extra = dict(state["extra"])
    previous = {k: np.asarray(v) for k, v in extra.items()
                if k in ("ori1", "ori2", "knn1", "knn2", "neg1", "neg2")}
    tables = self._tables(a, z["z1"][order], z["z2"][order], epoch, self._rng(epoch), previous)
    extra.update({k: jnp.asarray(v) for k, v in tables.items()})
    extra["epoch"] = jnp.asarray(epoch, jnp.int32)
    state = dict(state)
    state["extra"] = jax.device_put(extra, sharding.replicated(env.mesh))
    return state

  def start_stage(self, env, state, stage):
    """Epoch 0: the latent tables and negatives from the untrained encoder, as the official loop."""
    if int(state["extra"]["epoch"]) == 0:
      return self._refresh(env, state, 0)
    return state

  def after_step(self, env, state, step):
    epoch, within = divmod(int(step), self.steps_per_epoch(env))
    if within or int(step) >= self.config.total_steps:
      return state
    return self._refresh(env, state, epoch)

  # --- training -----------------------------------------------------------------------------------
  def loss(self, model, batch, rng, extra, step):
    ae1, ae2 = model.views[0], model.views[1]
    x1, x2, idx = batch["x1"], batch["x2"], batch["index"]
    p1, p2 = batch["present1"].astype(bool), batch["present2"].astype(bool)
    if "mask" in batch:
      p1, p2 = p1 & batch["mask"].astype(bool), p2 & batch["mask"].astype(bool)
    real = p1 | p2
    all1, all2 = batch["all_x1"], batch["all_x2"]
    z1, e1 = _reconstruction_errors(ae1, x1)
    z2, e2 = _reconstruction_errors(ae2, x2)
    l_rec = jnp.mean(e1, where=p1) + jnp.mean(e2, where=p2)
    epoch = extra["epoch"]
    imputed = epoch >= self.impute_from
    c1 = jnp.where(imputed, rcpmod.complete(ae1, z1, all1, extra["knn1"][idx], p1), z1)
    c2 = jnp.where(imputed, rcpmod.complete(ae2, z2, all2, extra["knn2"][idx], p2), z2)
    valid = jnp.where(imputed, real, p1 & p2)
    memory = memory_valid = None
    if self.memory_size:
      s, m = extra["memory1"].shape[:2]
      memory = (_normalise(ae1.encode(extra["memory1"].reshape(s * m, -1))),
                _normalise(ae2.encode(extra["memory2"].reshape(s * m, -1))))
      memory_valid = jnp.repeat(jnp.arange(s) < extra["memory_count"], m)
    l_con = ol.nt_xent(_normalise(c1), _normalise(c2), self.temperature, memory, valid,
                       memory_valid)
    l_knn = jnp.zeros(())
    if self.w_knn:
      n1 = _normalise(ae1.encode(all1[extra["knn1"][idx]]))
      n2 = _normalise(ae2.encode(all2[extra["knn2"][idx]]))
      l_knn = jnp.mean(jnp.stack([ol.nt_xent(n1[:, j], n2[:, j], self.temperature, valid=real)
                                  for j in range(self.k)]))
    w = warmup_weight(epoch, self.warmup_max, self.w2, self.schedule_epoch)
    l_trip = (ol.triplet(z1, ae1.encode(all1[extra["pos1"][idx]]),
                         ae1.encode(all1[extra["neg1"][idx]]), where=p1)
              + ol.triplet(z2, ae2.encode(all2[extra["pos2"][idx]]),
                           ae2.encode(all2[extra["neg2"][idx]]), where=p2))
    l_uni = ol.spreading(z1, where=p1) + ol.spreading(z2, where=p2)
    total = l_rec + self.w_con * l_con + self.w_knn * l_knn + w * (l_trip + l_uni)
    new_extra = self._push_memory(extra, x1, x2, z1, z2, p1 & p2) if self.memory_size else extra
    metrics = {"rec": l_rec, "con": l_con, "knn": l_knn, "trip": l_trip, "uni": l_uni,
               "warmup": w}
    return total, {"metrics": metrics, "extra": new_extra}

  def _push_memory(self, extra, x1, x2, z1, z2, both):
    """FIFO write of the raw inputs of the least cross-view-similar samples (both views present)."""
    sim = jnp.sum(_normalise(z1) * _normalise(z2), axis=-1)
    sim = jax.lax.stop_gradient(jnp.where(both, sim, jnp.inf))
    _, low = jax.lax.top_k(-sim, self.memory_rows)
    slot = extra["memory_next"]
    extra = dict(extra)
    extra["memory1"] = extra["memory1"].at[slot].set(x1[low])
    extra["memory2"] = extra["memory2"].at[slot].set(x2[low])
    extra["memory_next"] = (slot + 1) % self.memory_size
    extra["memory_count"] = jnp.minimum(extra["memory_count"] + 1, self.memory_size)
    return extra

  # --- scoring ------------------------------------------------------------------------------------
  @staticmethod
  def outputs(model, batch):
    z1, e1 = _reconstruction_errors(model.views[0], batch["x1"])
    z2, e2 = _reconstruction_errors(model.views[1], batch["x2"])
    return {"z1": z1, "z2": z2, "e1": e1, "e2": e2, "outlier": batch["outlier"]}

  def scores(self, env, state) -> tuple[np.ndarray, np.ndarray]:
    """(`[n]` outlier scores, `[n]` 0/1 outlier flags) over the whole set."""
    a = self._arrays(env)
    out = env.predict(state, self.outputs, split=self.config.data.eval_split)
    order = np.argsort(out["index"])
    o = {k: v[order] for k, v in out.items()}
    p1, p2 = a["present1"], a["present2"]
    knn1, knn2 = np.asarray(state["extra"]["knn1"]), np.asarray(state["extra"]["knn2"])
    c1 = np.where(p1[:, None], o["z1"], o["z1"][knn1].mean(1))
    c2 = np.where(p2[:, None], o["z2"], o["z2"][knn2].mean(1))
    attribute = np.asarray(rcpmod.attribute_scores((o["e1"], o["e2"]), (p1, p2)))
    contrastive = np.asarray(ol.nt_xent_scores(_normalise(jnp.asarray(c1)),
                                               _normalise(jnp.asarray(c2)), self.temperature))
    if self.score == "attribute":
      score = attribute
    elif self.score == "contrastive":
      score = contrastive
    else:
      score = np.asarray(rcpmod.fused_scores(attribute, contrastive, self.r_w))
    return score, o["outlier"]

  def evaluate(self, env, state):
    score, flags = self.scores(env, state)
    return {"auc": roc_auc(flags, score)}

"""RCPMOD training and scoring (regularized contrastive partial multi-view outlier detection, ACM MM
2024, arXiv 2408.07819; official code 180400518/RCPMOD `model.py`, `run.py`).

Views come in pairs. With V views the official `run.py` trains the C(V, 2) pairs one after another
(itertools order), each for the full schedule with a fresh Adam, the per-view autoencoders carried
from pair to pair: here one stage per pair (`config.stages`, `reset_optimizer`), the stage's index
naming its pair. Each pair trains and scores the samples having at least one of its two views; its
tables, memory and epoch counter start afresh with the stage. A pair's scores are kept in `extra`
(`pair_scores`) when its stage ends, and the final score of a sample is the mean of its scores over
the pairs covering it (`mean_over_pairs`). Below, views 1 and 2 are the pair's two views.

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

Differences from the official code: batches follow the trainer's shuffled epochs over the whole
set (the official order is one fixed `random_state=1` shuffle of the pair's samples and keeps the
last partial batch; samples having neither view of the pair are masked out of every term here);
the mean over pairs takes the pairs covering a sample, where the official code averages a row's
non-zero pair scores (the same unless a covered sample's fused score is exactly 0, the minimum of
both terms, which the official code then drops).
"""
from __future__ import annotations

import itertools

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


def pair_outlier_scores(z, errors, present, knn, temperature: float, r_w: float,
                        kind: str = "fused") -> np.ndarray:
  """One pair's `[n]` outlier scores over the samples having at least one of its views (0 for the
  others; the official `evaluation` on the pair's subset). `z`, `errors`, `present`, `knn`: the
  two views' latents `[n, l]`, reconstruction errors `[n]`, presence flags `[n]` and neighbour
  tables `[n, k]` (whole-set ids). A missing view's latent is the mean latent of its neighbours."""
  covered = np.flatnonzero(present[0] | present[1])
  p = [np.asarray(f, bool)[covered] for f in present]
  c = [np.where(f[:, None], zv[covered], zv[t[covered]].mean(1)) for zv, t, f in zip(z, knn, p)]
  attribute = np.asarray(rcpmod.attribute_scores([e[covered] for e in errors], p))
  contrastive = np.asarray(ol.nt_xent_scores(_normalise(jnp.asarray(c[0])),
                                             _normalise(jnp.asarray(c[1])), temperature))
  score = {"attribute": lambda: attribute, "contrastive": lambda: contrastive,
           "fused": lambda: np.asarray(rcpmod.fused_scores(attribute, contrastive, r_w))}[kind]()
  out = np.zeros(len(present[0]), np.float64)
  out[covered] = score
  return out


def mean_over_pairs(scores: np.ndarray, covered: np.ndarray) -> np.ndarray:
  """`[n]` mean of each sample's pair scores `[n, P]` over the pairs covering it `[n, P]`."""
  return np.sum(np.where(covered, scores, 0.0), 1) / np.maximum(covered.sum(1), 1)


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
    self.num_views = len(config.model.archs)
    self.pairs = list(itertools.combinations(range(self.num_views), 2))
    stages = len(config.get("stages", ()) or [None])
    if stages != len(self.pairs):
      raise ValueError(f"RCPMOD trains the view pairs one after another, one stage each: "
                       f"{self.num_views} views make {len(self.pairs)} pairs, but the run "
                       f"has {stages} stage(s) (configs/outlier/rcpmod.py builds them).")
    self._functions = {}

  @property
  def pair_index(self) -> int:
    return self.stage.index if self.stage is not None else 0

  @property
  def pair(self) -> tuple[int, int]:
    return self.pairs[self.pair_index]

  # --- data ---------------------------------------------------------------------------------------
  def _arrays(self, env):
    """The pair's whole views and presence flags (`x1`, `x2`, `present1`, `present2`)."""
    arrays = env.dataset(self.config.data.train_split).source.arrays
    out = {}
    for j, v in enumerate(self.pair):
      out[f"x{j + 1}"] = np.asarray(arrays[f"x{v + 1}"])
      out[f"present{j + 1}"] = np.asarray(arrays[f"present{v + 1}"], bool)
    return out

  def constants(self, env):
    """The whole views: neighbours' and memory rows' inputs are read from them."""
    arrays = env.dataset(self.config.data.train_split).source.arrays
    return {f"all_x{v + 1}": np.asarray(arrays[f"x{v + 1}"])
            for v in range(self.num_views)}

  def steps_per_epoch(self, env) -> int:
    return len(env.dataset(self.config.data.train_split).source) // self.config.batch_size

  def _tables(self, a, z1, z2, epoch: int, rng: np.random.Generator, previous):
    """Latent kNN tables (epoch % change_knn_epoch == 0), negatives (epoch % change_neg_epoch ==
    0) and positives (every epoch) for `epoch`; the rest kept from `previous`."""
    out = dict(previous)
    p1, p2 = a["present1"], a["present2"]
    if epoch % self.change_knn_epoch == 0:
      out["knn1"], out["knn2"] = multiview.pair_knn_tables(z1, z2, p1, p2, self.k, self.pool)
    if epoch % self.change_neg_epoch == 0:
      pool = max(self.pool or 40, 2 * self.neg_rank)  # room for the missing views' borrowing
      n1, n2 = multiview.pair_knn_tables(z1, z2, p1, p2, self.neg_rank, pool)
      out["neg1"], out["neg2"] = n1[:, -1], n2[:, -1]
    pick = rng.integers(0, self.k, (2, len(p1)))
    rows = np.arange(len(p1))
    out["pos1"], out["pos2"] = out["ori1"][rows, pick[0]], out["ori2"][rows, pick[1]]
    return {k: np.asarray(v, np.int32) for k, v in out.items()}

  def init_extra(self, env, rng, params):
    """Zeros of the right shapes; `start_stage` fills in the pair's tables."""
    n = len(env.dataset(self.config.data.train_split).source)
    table = jnp.zeros((n, self.k), jnp.int32)
    column = jnp.zeros((n,), jnp.int32)
    return {"ori1": table, "ori2": table, "knn1": table, "knn2": table, "neg1": column,
            "neg2": column, "pos1": column, "pos2": column, "epoch": jnp.zeros((), jnp.int32),
            "memory": jnp.zeros((max(self.memory_size, 1), max(self.memory_rows, 1)), jnp.int32),
            "memory_count": jnp.zeros((), jnp.int32), "memory_next": jnp.zeros((), jnp.int32),
            "pair_scores": jnp.zeros((n, len(self.pairs)), jnp.float32)}

  def _rng(self, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(self.config.seed), 7, int(epoch)])

  # --- per-epoch refresh ----------------------------------------------------------------------
  def _function(self, name: str):
    """The pair's jitted-by-`env.predict` function `name` (one object per task, so it compiles
    once): `latents` (z1, z2) or `outputs` (latents, reconstruction errors, outlier flags)."""
    if name not in self._functions:
      a, b = self.pair

      def latents(model, batch):
        return {"z1": model.views[a].encode(batch[f"x{a + 1}"]),
                "z2": model.views[b].encode(batch[f"x{b + 1}"])}

      def outputs(model, batch):
        z1, e1 = _reconstruction_errors(model.views[a], batch[f"x{a + 1}"])
        z2, e2 = _reconstruction_errors(model.views[b], batch[f"x{b + 1}"])
        return {"z1": z1, "z2": z2, "e1": e1, "e2": e2, "outlier": batch["outlier"]}
      self._functions.update(latents=latents, outputs=outputs)
    return self._functions[name]

  def _refresh(self, env, state, epoch: int, extra=None):
    a = self._arrays(env)
    z = env.predict(state, self._function("latents"), split=self.config.data.train_split)
    order = np.argsort(z["index"])
    extra = dict(extra or state["extra"])
    previous = {k: np.asarray(v) for k, v in extra.items()
                if k in ("ori1", "ori2", "knn1", "knn2", "neg1", "neg2")}
    tables = self._tables(a, z["z1"][order], z["z2"][order], epoch, self._rng(epoch), previous)
    extra.update({k: jnp.asarray(v) for k, v in tables.items()})
    extra["epoch"] = jnp.asarray(epoch, jnp.int32)
    state = dict(state)
    state["extra"] = jax.device_put(extra, sharding.replicated(env.mesh))
    return state

  def start_stage(self, env, state, stage):
    """A pair starts: input-space neighbour tables (the positives' pool), an empty memory, epoch
    0 with the latent tables and negatives from the encoders as they are (the official loop)."""
    a = self._arrays(env)
    ori1, ori2 = multiview.pair_knn_tables(a["x1"], a["x2"], a["present1"], a["present2"],
                                           self.k, self.pool)
    extra = dict(state["extra"])
    extra.update(ori1=jnp.asarray(ori1, jnp.int32), ori2=jnp.asarray(ori2, jnp.int32),
                 memory=jnp.zeros_like(extra["memory"]),
                 memory_count=jnp.zeros((), jnp.int32), memory_next=jnp.zeros((), jnp.int32))
    return self._refresh(env, state, 0, extra)

  def after_step(self, env, state, step):
    step = int(step)
    if step == self.stage.end and self.pair_index < len(self.pairs) - 1:
      extra = dict(state["extra"])  # the finished pair's scores, kept for the final mean
      extra["pair_scores"] = extra["pair_scores"].at[:, self.pair_index].set(
          self.scores(env, state, pairs=False)[0])
      return {**state, "extra": jax.device_put(extra, sharding.replicated(env.mesh))}
    epoch, within = divmod(step - self.stage.start, self.steps_per_epoch(env))
    if within or step >= self.stage.end:
      return state
    return self._refresh(env, state, epoch)

  # --- training -----------------------------------------------------------------------------------
  def loss(self, model, batch, rng, extra, step):
    a, b = self.pair
    ae1, ae2 = model.views[a], model.views[b]
    x1, x2, idx = batch[f"x{a + 1}"], batch[f"x{b + 1}"], batch["index"]
    p1, p2 = batch[f"present{a + 1}"].astype(bool), batch[f"present{b + 1}"].astype(bool)
    if "mask" in batch:
      p1, p2 = p1 & batch["mask"].astype(bool), p2 & batch["mask"].astype(bool)
    real = p1 | p2
    all1, all2 = batch[f"all_x{a + 1}"], batch[f"all_x{b + 1}"]
    z1, e1 = _reconstruction_errors(ae1, x1)
    z2, e2 = _reconstruction_errors(ae2, x2)
    l_rec = jnp.mean(e1, where=p1) + jnp.mean(e2, where=p2)
    epoch = extra["epoch"]
    l_con = l_knn = l_trip = l_uni = jnp.zeros(())  # terms of weight 0 are not computed
    if self.w_con:
      imputed = epoch >= self.impute_from
      c1 = jnp.where(imputed, rcpmod.complete(ae1, z1, all1, extra["knn1"][idx], p1), z1)
      c2 = jnp.where(imputed, rcpmod.complete(ae2, z2, all2, extra["knn2"][idx], p2), z2)
      memory = memory_valid = None
      if self.memory_size:
        s, m = extra["memory"].shape
        rows = extra["memory"].reshape(s * m)
        memory = (_normalise(ae1.encode(all1[rows])), _normalise(ae2.encode(all2[rows])))
        memory_valid = jnp.repeat(jnp.arange(s) < extra["memory_count"], m)
      l_con = ol.nt_xent(_normalise(c1), _normalise(c2), self.temperature, memory,
                         jnp.where(imputed, real, p1 & p2), memory_valid)
    if self.w_knn:
      n1 = _normalise(ae1.encode(all1[extra["knn1"][idx]]))
      n2 = _normalise(ae2.encode(all2[extra["knn2"][idx]]))
      l_knn = jnp.mean(jnp.stack([ol.nt_xent(n1[:, j], n2[:, j], self.temperature, valid=real)
                                  for j in range(self.k)]))
    w = warmup_weight(epoch, self.warmup_max, self.w2, self.schedule_epoch)
    if self.warmup_max or self.w2:
      l_trip = (ol.triplet(z1, ae1.encode(all1[extra["pos1"][idx]]),
                           ae1.encode(all1[extra["neg1"][idx]]), where=p1)
                + ol.triplet(z2, ae2.encode(all2[extra["pos2"][idx]]),
                             ae2.encode(all2[extra["neg2"][idx]]), where=p2))
      l_uni = ol.spreading(z1, where=p1) + ol.spreading(z2, where=p2)
    total = l_rec + self.w_con * l_con + self.w_knn * l_knn + w * (l_trip + l_uni)
    new_extra = self._push_memory(extra, idx, z1, z2, p1 & p2) if self.memory_size else extra
    metrics = {"rec": l_rec, "con": l_con, "knn": l_knn, "trip": l_trip, "uni": l_uni,
               "warmup": w}
    return total, {"metrics": metrics, "extra": new_extra}

  def _push_memory(self, extra, idx, z1, z2, both):
    """FIFO write of the least cross-view-similar samples (both views present); the memory holds
    their ids, their raw inputs being rows of the constant views."""
    sim = jnp.sum(_normalise(z1) * _normalise(z2), axis=-1)
    sim = jax.lax.stop_gradient(jnp.where(both, sim, jnp.inf))
    _, low = jax.lax.top_k(-sim, self.memory_rows)
    slot = extra["memory_next"]
    extra = dict(extra)
    extra["memory"] = extra["memory"].at[slot].set(idx[low].astype(jnp.int32))
    extra["memory_next"] = (slot + 1) % self.memory_size
    extra["memory_count"] = jnp.minimum(extra["memory_count"] + 1, self.memory_size)
    return extra

  # --- scoring ------------------------------------------------------------------------------------
  def scores(self, env, state, pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(`[n]` outlier scores, `[n]` 0/1 outlier flags) over the whole set: the current pair's
    scores, or with `pairs` their mean with those of the pairs trained before it."""
    a = self._arrays(env)
    out = env.predict(state, self._function("outputs"), split=self.config.data.eval_split)
    o = {k: v[np.argsort(out["index"])] for k, v in out.items()}
    knn = [np.asarray(state["extra"]["knn1"]), np.asarray(state["extra"]["knn2"])]
    current = pair_outlier_scores((o["z1"], o["z2"]), (o["e1"], o["e2"]),
                                  (a["present1"], a["present2"]), knn, self.temperature, self.r_w,
                                  self.score)
    if not pairs:
      return current, o["outlier"]
    arrays = env.dataset(self.config.data.train_split).source.arrays
    stored = np.asarray(state["extra"]["pair_scores"], np.float64).copy()
    stored[:, self.pair_index] = current
    covered = np.stack([np.asarray(arrays[f"present{u + 1}"], bool)
                        | np.asarray(arrays[f"present{v + 1}"], bool)
                        for u, v in self.pairs], 1)
    covered[:, self.pair_index + 1:] = False  # pairs not trained yet
    return mean_over_pairs(stored, covered), o["outlier"]

  def evaluate(self, env, state):
    score, flags = self.scores(env, state)
    return {"auc": roc_auc(flags, score)}

"""Collaborative metric learning with C vectors per user: DPCML (Bao et al., NeurIPS 2022;
statusrank/DPCML) and CML (C = 1), on the `dpcml` model.

Training batches are triplets `{user [B], pos [B], neg [B] or [B, S]}` (`data/recsys.py` samples
negatives outside the user's training items). The loss is the official one,

    Σ_batch [m + s(u, v+) - s(u, v-)]_+  +  η · DCRS(all users)

(the hardest of S negatives with `neg [B, S]`: DPCML2; DCRS only when η > 0, δ1 < δ2 and C > 1,
`per_pair` chooses the code's or the paper's form, `losses/recsys.py`). The looked-up item ids go to
the optimizer as `tx_args["item_ids"]` for the `norm_projections` post transform.

Evaluation ranks every item for each user of the eval split (`scores`), removes the user's training
items and computes P/R/NDCG@k and MAP/MRR/AUC/NDCG exactly as the official `Evaluator`
(`evaluators/ranking.py`). The eval split's examples are user ids; `info` carries the `[U, N]`
train and held-out masks. When `info` names item categories and a `minority` subset of them (the
generated multi-interest set), `minority_R@10` adds the recall@10 of held-out minority-category
items, over the users holding such items out. With `candidates = K` (at least max(ks) plus the
largest training set), evaluation keeps only each user's top K items, found per item shard
(`item_shards`, the row shards of the item table) and merged (`DPCML.top_items`), and reports
P/R/NDCG@k: the full `[U, N]` score matrix is never formed.

`bpr_recsys` is the matrix-factorisation baseline (MF-BPR) on the same data, tables and evaluation.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from losses import recsys as losses
from ml_pipelines import tasks
from ml_pipelines.evaluators.ranking import ranking_metrics
from ml_pipelines.tasks.base import Task


@tasks.register("metric_learning_recsys")
class MetricLearningRecsys(Task):
  OPTIONS = frozenset({"margin", "reg", "delta1", "delta2", "per_pair", "ks", "candidates",
                       "item_shards"})

  def option(self, name, default):
    return self.config.task.get(name, default)

  def loss_terms(self, model, batch):
    """(summed hinge, DCRS value) of one batch."""
    pos = model.distances(batch["user"], batch["pos"])
    neg = model.distances(batch["user"], batch["neg"])
    hinge = jnp.sum(losses.hinge(pos, neg, self.option("margin", 1.0)))
    users = model.user_embeddings[...]
    d1, d2 = self.option("delta1", 0.1), self.option("delta2", 0.35)
    if self.option("reg", 10.0) > 0 and d1 < d2 and users.shape[1] > 1:
      return hinge, losses.diversity_barrier(users, d1, d2, self.option("per_pair", True))
    return hinge, jnp.zeros([])

  def loss(self, model, batch, rng, extra, step):
    hinge, dcrs = self.loss_terms(model, batch)
    ids = jnp.concatenate([batch["pos"].reshape(-1), batch["neg"].reshape(-1)])
    return hinge + self.option("reg", 10.0) * dcrs, {
        "metrics": {"hinge": hinge, "dcrs": dcrs}, "tx_args": {"item_ids": ids}}

  def eval_metrics(self, model, batch):
    candidates = self.option("candidates", 0)
    if candidates:
      values, ids = model.top_items(batch["user"], candidates, self.option("item_shards", 1))
      return {"top_scores": values, "top_items": ids, "user": batch["user"]}
    return {"scores": model.scores(batch["user"]), "user": batch["user"]}

  def evaluate(self, env, state):
    split = self.config.data.eval_split
    info = env.dataset(split).info
    out = env.predict(state, self.eval_metrics, split=split)
    users = out["user"]
    train_mask, test_mask = info["train_mask"][users], info["test_mask"][users]
    ks = tuple(self.option("ks", (3, 5)))
    if "top_items" in out:
      return top_k_metrics(out["top_scores"], out["top_items"], train_mask, test_mask, ks)
    metrics = ranking_metrics(out["scores"], train_mask, test_mask, ks=ks)
    if "minority" in info:
      minority = np.isin(info["item_category"], info["minority"])
      metrics["minority_R@10"] = subset_recall(out["scores"], train_mask, test_mask & minority, 10)
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


@tasks.register("bpr_recsys")
class BprRecsys(MetricLearningRecsys):
  """The matrix-factorisation baseline trained by BPR (Rendle et al., UAI 2009) on the same
  triplets, tables and evaluation as the metric-learning task (`matrix_factorization` model):

      Σ_batch -log σ(s(u, v+) - s(u, v-))  +  (λ/2) Σ_batch (||p_u||² + ||q_v+||² + ||q_v-||²)

  with `s(u, v) = p_u · q_v` and λ = `l2`. The L2 term is BPR-Opt's `λ ||Θ||²` taken, as LearnBPR's
  stochastic step takes it, on the rows each triplet touches, so its gradient per triplet is
  `λ θ` on those rows (and the lookups stay shard-local: no all-table term). With `[B, S]`
  negatives every negative is a triplet of its own."""
  OPTIONS = frozenset({"l2", "ks", "candidates", "item_shards"})

  def loss(self, model, batch, rng, extra, step):
    users, pos, neg = (model.users(batch["user"]), model.items(batch["pos"]),
                       model.items(batch["neg"]))
    bpr = jnp.sum(losses.bpr(jnp.sum(users * pos, -1), jnp.einsum("bd,b...d->b...", users, neg)))
    shared = jnp.sum(jnp.square(users) + jnp.square(pos), -1)                 # [B]
    per_triplet = shared.reshape(-1, *[1] * (neg.ndim - 2)) + jnp.sum(jnp.square(neg), -1)
    l2 = 0.5 * self.option("l2", 0.0025) * jnp.sum(per_triplet)
    return bpr + l2, {"metrics": {"bpr": bpr, "l2": l2}}


def top_k_metrics(top_scores, top_items, train_mask, test_mask, ks) -> dict[str, float]:
  """P/R/NDCG@k from each user's `[U, K]` best items alone (`candidates` = K): exact when K covers
  max(ks) plus the user's training items, which the official evaluator also over-fetches
  (top-(k + max #train items)) because it filters training items after ranking."""
  need = int(train_mask.sum(1).max()) + max(ks)
  if top_items.shape[1] < need:
    raise ValueError(f"task.candidates={top_items.shape[1]} is too few: a user has "
                     f"{need - max(ks)} training items, so the top {max(ks)} after filtering needs "
                     f"{need} candidates.")
  scores = np.full(train_mask.shape, -np.inf, np.float32)
  np.put_along_axis(scores, top_items, top_scores, axis=1)
  metrics = ranking_metrics(scores, train_mask, test_mask, ks=ks)
  return {k: float(v) for k, v in metrics.items() if "@" in k and np.isfinite(v)}


def subset_recall(scores: np.ndarray, train_mask: np.ndarray, held: np.ndarray, k: int) -> float:
  """Mean over users with held items of |top-k (training items removed) ∩ held| / |held|."""
  scores = np.where(train_mask, -np.inf, scores)
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  hits = np.take_along_axis(held, top, axis=1).sum(1)
  users = held.sum(1) > 0
  return float(np.mean(hits[users] / held.sum(1)[users]))

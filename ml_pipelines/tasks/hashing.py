"""Deep-hashing tasks: ADSH's asymmetric training loop, shared by ADSH, ExchNet, SEMICON, DMIH, MCH.

ADSH (Jiang & Li, AAAI 2018, Algorithm 1; official jiangqy/ADSH-AAAI2018): the query network is
trained against database codes V in {-1,+1}^{n x c} that are learned directly. In the trainer:
- the training split is the database; each batch carries `index`, its rows of V;
- an outer iteration is `outer_steps` training steps (official: T_in = 3 epochs over m = 2000 sampled
  points at batch 64, i.e. ~94 steps). The database points the batches visit during the outer
  iteration are its sample Omega (the trainer draws them, shuffled, without replacement inside an
  epoch); the latest training output u of each is kept in U, as the official code keeps it;
- at the end of each outer iteration `after_step` recomputes the soft-similarity ratio
  r = sum S / sum (1 - S) over Omega x database (the official code recomputes it for every outer
  iteration's sample) and runs the bit-by-bit discrete update of V on the device
  (`losses.hashing.discrete_update`) with Omega, U and that soft similarity, then clears U. The new r
  also serves the next iteration's steps (the official r of an iteration comes from its own sample,
  which the trainer only draws as the steps go); the first iteration's r comes from a random sample
  of as many rows.
- `v_init`: V starts as `zeros` (ADSH), `randn` (SEMICON, continuous N(0, 1) until the first
  update) or `sign_randn` (the sign of that draw).
V, U, the visited mask, the database labels, the soft-similarity ratio r and ExchNet's anchors live
in the task's `extra` state, so they are checkpointed and a resumed run continues exactly.

Evaluation (query split against the database codes V): mAP@K (K = `topk`, all when None),
precision / recall within Hamming radius 2, buckets a multi-index probes per query at radius 2, and
the precision-recall curve saved as `pr_curve_<step>.png` in the run's workdir (`env.workdir`).
The workdir also gets `codes/database.npz` (the database codes V, labels) and `codes/queries.npz`
(the query split's codes sign(F(x)), labels) of the newest evaluation: the input of
`python -m ml_pipelines.search.hash_index build / query`.

Per method (`config.task.name`):
- `adsh`: the ADSH loss.
- `exchnet`: ADSH loss x 12/c + spatial / channel diversity, and from outer iteration `align_start`
  on, the alignment loss and the feature exchange with class anchors. Anchors are the per-class means
  of the local features of the database points trained on in the previous outer iteration (summed in
  training mode during the iteration, so they match the features they replace; the paper averages
  over the whole database). Diversity and alignment losses are averaged over the batch; the
  alignment is one Frobenius norm over the batch (`align_norm="batch"`, the reference
  implementation) or the sum of per-example norms (`"per_example"`). The reference leaves ADSH's
  quantization term off unless asked (`--quan-loss`): the config's gamma = 0 does the same in the
  loss and in the discrete update (its `solve_dcc_exch`).
- `semicon`: ADSH loss x 12/c (official `ADSH_Loss`), V initialised to randn (official
  `SEMICON_train.py`: `B = torch.randn(...)`; its first discrete update sees the continuous values).
- `dmih`: ADSH loss + `sami_weight` x SAMI; buckets counted with one table per code block.
- `mch`: stage 1 (steps < `policy_start`): ADSH loss on every region code; stage 2 adds REINFORCE
  for the selection policy (which sees stop-gradient features, so the policy loss trains the policy
  only; the hashing loss stays on so the codes do not drift from V under momentum and weight decay).
  Reward: recall in the union of radius-2 balls minus `reward_cost` per kept code, against the
  batch's own database codes. Queries use the kept region codes (union of balls, buckets summed).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from losses import hashing as hl
from ml_pipelines.trainer import sharding
from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task

V_INITS = ("zeros", "randn", "sign_randn")
COMMON = {"gamma", "outer_steps", "v_init", "topk", "radius", "loss_scale"}
METHOD_OPTIONS = {
    "adsh": set(),
    "exchnet": {"sp_weight", "ch_weight", "align_weight", "align_start", "ch_margin",
                "align_norm"},
    "semicon": set(),
    "dmih": {"sami_weight", "sami_radius", "num_blocks"},
    "mch": {"policy_start", "reward_cost"},
}


class _Hashing(Task):
  """ADSH's asymmetric loop; subclasses change the loss and the query codes."""
  method = "adsh"
  default_v_init = "zeros"
  default_scale = "1"

  @property
  def OPTIONS(self):  # noqa: N802 -- the task contract's name for the option list
    return frozenset(COMMON | METHOD_OPTIONS[self.method])

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.bits = int(config.model.bits)
    self.gamma = float(t.get("gamma", 200.0))
    self.outer_steps = int(t.get("outer_steps", 94))
    self.v_init = t.get("v_init", self.default_v_init)
    if self.v_init not in V_INITS:
      raise ValueError(f"v_init must be one of {V_INITS}, not {self.v_init!r}.")
    self.topk = t.get("topk", None)
    self.radius = int(t.get("radius", 2))
    scale = t.get("loss_scale", self.default_scale)
    self.scale = 12.0 / self.bits if scale == "12/c" else float(scale)
    self._update_fn = jax.jit(self._outer_update)

  # --- state -------------------------------------------------------------------------------------
  def init_extra(self, env, rng, params):
    labels = np.asarray(env.dataset(self.config.data.train_split).info["labels"], np.float32)
    n = labels.shape[0]
    sample_rng, v_rng = jax.random.split(rng)
    # The first outer iteration's r: a random sample of m rows (the official r comes from the
    # iteration's own sample, which the trainer only draws as the steps go); each outer update
    # then recomputes r from the rows it visited (`_outer_update`).
    m = min(n, self.outer_steps * int(self.config.batch_size))
    rows = np.asarray(jax.random.permutation(sample_rng, n))[:m]
    r = hl.soft_ratio_of_rows(jnp.asarray(labels[rows]), jnp.asarray(labels), jnp.ones((m,)))
    if self.v_init == "zeros":
      v = jnp.zeros((n, self.bits), jnp.float32)
    else:
      v = jax.random.normal(v_rng, (n, self.bits))
      v = jnp.sign(v) if self.v_init == "sign_randn" else v
    return {"V": v, "U": jnp.zeros((n, self.bits), jnp.float32), "seen": jnp.zeros((n,), bool),
            "db_labels": jnp.asarray(labels), "r": r, "outer": jnp.zeros([], jnp.int32)}

  # --- training ------------------------------------------------------------------------------------
  def codes(self, model, batch, rng, extra, step):
    """(u for U and the ADSH loss, the method's extra loss, metrics, outputs for update_extra)."""
    return model(batch["image"])["code"], 0.0, {}, {}

  def update_extra(self, extra, batch, outputs):
    """Method state updated by a training step (ExchNet's anchor sums)."""
    return extra

  def outer_extra(self, extra):
    """Method state updated at the end of an outer iteration, inside the jitted update."""
    return extra

  def loss(self, model, batch, rng, extra, step):
    index = batch["index"]
    u, extra_loss, metrics, outputs = self.codes(model, batch, rng, extra, step)
    s_soft = hl.soft_similarity(hl.similarity(batch["labels"], extra["db_labels"]), extra["r"])
    hash_loss = hl.adsh_loss(u, extra["V"], s_soft, extra["V"][index], self.gamma,
                             extra["V"].shape[0], self.scale)
    new = dict(extra)
    new["U"] = extra["U"].at[index].set(jax.lax.stop_gradient(u))
    new["seen"] = extra["seen"].at[index].set(True)
    new = self.update_extra(new, batch, outputs)
    metrics = {"hash_loss": hash_loss, **metrics}
    return hash_loss + extra_loss, {"metrics": metrics, "extra": new}

  # --- the outer iteration ---------------------------------------------------------------------------
  def _outer_update(self, extra, omega, weight):
    u = extra["U"][omega] * weight[:, None]
    omega_labels = extra["db_labels"][omega]
    r = hl.soft_ratio_of_rows(omega_labels, extra["db_labels"], weight)
    stu = hl.soft_similarity_t_u(extra["db_labels"], omega_labels, u, r)
    v = hl.discrete_update(extra["V"], u, stu, omega, self.gamma)
    new = dict(extra)
    new.update(V=v, U=jnp.zeros_like(extra["U"]), seen=jnp.zeros_like(extra["seen"]), r=r,
               outer=extra["outer"] + 1)
    return self.outer_extra(new)

  def omega(self, extra):
    """(indices [m_max] padded with 0, weights [m_max]) of the database rows visited this outer
    iteration; m_max = outer_steps x batch_size keeps one compiled update."""
    seen = np.flatnonzero(np.asarray(extra["seen"]))
    m_max = self.outer_steps * int(self.config.batch_size)
    idx = np.zeros(m_max, np.int32)
    w = np.zeros(m_max, np.float32)
    idx[:len(seen)] = seen
    w[:len(seen)] = 1.0
    return idx, w

  def after_step(self, env, state, step):
    if step % self.outer_steps:
      return state
    omega, weight = self.omega(state["extra"])
    extra = self._update_fn(state["extra"], jnp.asarray(omega), jnp.asarray(weight))
    state = dict(state)
    state["extra"] = jax.device_put(extra, sharding.replicated(env.mesh))
    return state

  # --- evaluation --------------------------------------------------------------------------------
  def query_outputs(self, model, batch):
    return {"code": jnp.sign(model(batch["image"])["code"]), "labels": batch["labels"]}

  def block_bits(self):
    """Substring lengths for the bucket count (None: multi_index's default m)."""
    return None

  def evaluate(self, env, state):
    from ml_pipelines.search import hamming
    from ml_pipelines.search import multi_index
    from ml_pipelines.evaluators import retrieval as rm
    q = env.predict(state, self.query_outputs, split=self.config.data.eval_split)
    db_codes = np.where(np.asarray(state["extra"]["V"]) >= 0, 1.0, -1.0).astype(np.float32)
    db_labels = np.asarray(state["extra"]["db_labels"])
    topk = None if self.topk is None else int(self.topk)
    out = {"mAP": float(rm.mean_average_precision(q["code"], db_codes, q["labels"], db_labels,
                                                  topk=topk))}
    index = multi_index.MultiIndex.build(hamming.pack_bits(db_codes), self.bits,
                                         block_bits=self.block_bits())
    out.update(self.radius_metrics(q, db_codes, db_labels, index))
    if jax.process_index() == 0:
      self.export(env.workdir, int(state["step"]), q, db_codes, db_labels)
    return out

  def export(self, workdir, step, q, db_codes, db_labels):
    """`codes/database.npz`, `codes/queries.npz` and `pr_curve_<step>.png` under `workdir`."""
    from ml_pipelines.evaluators import retrieval as rm
    os.makedirs(os.path.join(workdir, "codes"), exist_ok=True)
    np.savez(os.path.join(workdir, "codes", "database.npz"), codes=db_codes, labels=db_labels)
    np.savez(os.path.join(workdir, "codes", "queries.npz"), codes=np.asarray(q["code"]),
             labels=np.asarray(q["labels"]))
    precision, recall, _ = rm.precision_recall_curve(q["code"], db_codes, q["labels"], db_labels)
    rm.plot_precision_recall(
        {f"{self.method} {self.bits} bits, step {step}": (precision, recall)},
        os.path.join(workdir, f"pr_curve_{step}.png"))

  def radius_metrics(self, q, db_codes, db_labels, index):
    """Precision / recall within the radius (D1's metric) and buckets a multi-index probes."""
    from ml_pipelines.search import hamming
    from ml_pipelines.evaluators import retrieval as rm
    p, r = rm.precision_recall_at_radius(q["code"], db_codes, q["labels"], db_labels,
                                         radius=self.radius)
    buckets = index.radius_search(hamming.pack_bits(q["code"]), self.radius)[3]
    return {f"precision@r{self.radius}": float(np.mean(p)),
            f"recall@r{self.radius}": float(np.mean(r)),
            f"buckets@r{self.radius}": float(np.mean(buckets))}

@tasks.register("adsh")
class ADSH(_Hashing):
  method = "adsh"


@tasks.register("semicon")
class SEMICON(_Hashing):
  method = "semicon"
  default_v_init = "randn"
  default_scale = "12/c"


@tasks.register("exchnet")
class ExchNet(_Hashing):
  method = "exchnet"
  default_scale = "12/c"

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.sp_weight = float(t.get("sp_weight", 1.0))
    self.ch_weight = float(t.get("ch_weight", 1.0))
    self.align_weight = float(t.get("align_weight", 1.0))
    self.align_start = int(t.get("align_start", 1))
    self.ch_margin = float(t.get("ch_margin", 0.4))
    self.align_norm = t.get("align_norm", "batch")
    if self.align_norm not in ("batch", "per_example"):
      raise ValueError(f"align_norm must be 'batch' or 'per_example', not {self.align_norm!r}.")

  def init_extra(self, env, rng, params):
    extra = super().init_extra(env, rng, params)
    k = extra["db_labels"].shape[1]
    shape = (k, int(self.config.model.get("num_parts", 4)), self._feature_dim())
    extra.update(anchors=jnp.zeros(shape, jnp.float32), anchor_sum=jnp.zeros(shape, jnp.float32),
                 anchor_count=jnp.zeros((k,), jnp.float32))
    return extra

  def _feature_dim(self):
    import models
    model = nnx.eval_shape(lambda: models.build(self.config.model))
    return model.feature_dim

  def codes(self, model, batch, rng, extra, step):
    parts = model.parts(batch["image"])
    f = parts["part_features"]
    classes = jnp.argmax(batch["labels"], -1)
    aligned = extra["outer"] >= self.align_start
    keep = jax.random.bernoulli(rng, 0.5, f.shape[:2]) | ~aligned
    f_used = hl.exchange_features(f, extra["anchors"], classes, keep)
    u = model.head(f_used, parts["global"])
    b = f.shape[0]
    l_sp = hl.spatial_diversity_loss(parts["part_maps"]) / b
    l_ch = hl.channel_diversity_loss(f, self.ch_margin) / b
    l_al = jnp.where(aligned, hl.alignment_loss(f, extra["anchors"], classes, self.align_norm),
                     0.0)
    extra_loss = self.sp_weight * l_sp + self.ch_weight * l_ch + self.align_weight * l_al
    return u, extra_loss, {"spatial": l_sp, "channel": l_ch, "align": l_al}, {"part_features": f}

  def update_extra(self, extra, batch, out):
    """Accumulates the per-class sums of this batch's (training-mode) local features."""
    f = jax.lax.stop_gradient(out["part_features"])
    classes = jnp.argmax(batch["labels"], -1)
    extra["anchor_sum"] = extra["anchor_sum"].at[classes].add(f)
    extra["anchor_count"] = extra["anchor_count"].at[classes].add(1.0)
    return extra

  def outer_extra(self, extra):
    """Anchors <- per-class means of the local features seen in the outer iteration (classes not
    seen keep their anchor); sums cleared."""
    count = extra["anchor_count"][:, None, None]
    extra["anchors"] = jnp.where(count > 0, extra["anchor_sum"] / jnp.maximum(count, 1.0),
                                 extra["anchors"])
    extra["anchor_sum"] = jnp.zeros_like(extra["anchor_sum"])
    extra["anchor_count"] = jnp.zeros_like(extra["anchor_count"])
    return extra


@tasks.register("dmih")
class DMIH(_Hashing):
  method = "dmih"

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.sami_weight = float(t.get("sami_weight", 1.0))
    self.sami_radius = int(t.get("sami_radius", self.radius))
    self.num_blocks = int(config.model.get("num_blocks", 4))

  def codes(self, model, batch, rng, extra, step):
    u = model(batch["image"])["code"]
    sami = hl.sami_loss(u, batch["labels"], self.num_blocks, self.sami_radius)
    return u, self.sami_weight * sami, {"sami": sami}, {}

  def block_bits(self):
    from ml_pipelines.search import multi_index
    return multi_index.split_bits(self.bits, self.num_blocks)


@tasks.register("mch")
class MCH(_Hashing):
  method = "mch"

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.policy_start = int(t.get("policy_start", 0))
    self.reward_cost = float(t.get("reward_cost", 0.02))

  def loss(self, model, batch, rng, extra, step):
    out = model(batch["image"])
    codes, logits = out["region_codes"], out["policy_logits"]
    index = batch["index"]
    n = extra["V"].shape[0]
    s_soft = hl.soft_similarity(hl.similarity(batch["labels"], extra["db_labels"]), extra["r"])
    region_losses = [hl.adsh_loss(codes[:, j], extra["V"], s_soft, extra["V"][index], self.gamma,
                                  n, self.scale) for j in range(codes.shape[1])]
    hash_loss = jnp.mean(jnp.stack(region_losses))
    # Stage 2: REINFORCE on the policy; the batch's own database codes are the search set.
    actions = jax.random.bernoulli(rng, jax.nn.sigmoid(logits))
    actions = actions.at[:, 0].set(True)  # the whole-image code is always kept
    db = jnp.where(extra["V"][index] >= 0, 1.0, -1.0)
    reward = hl.selection_reward(jnp.sign(jax.lax.stop_gradient(codes)), actions, db,
                                 hl.similarity(batch["labels"], batch["labels"]), self.radius,
                                 self.reward_cost)
    policy_loss = hl.reinforce_loss(logits, actions, reward)
    loss = hash_loss + jnp.where(step >= self.policy_start, policy_loss, 0.0)
    new = dict(extra)
    new["U"] = extra["U"].at[index].set(jax.lax.stop_gradient(codes[:, 0]))
    new["seen"] = extra["seen"].at[index].set(True)
    return loss, {"metrics": {"hash_loss": hash_loss, "policy_loss": policy_loss,
                              "reward": jnp.mean(reward)}, "extra": new}

  def query_outputs(self, model, batch):
    out = model(batch["image"])
    keep = (out["policy_logits"] > 0).at[:, 0].set(True)
    return {"code": jnp.sign(out["code"]), "region_codes": jnp.sign(out["region_codes"]),
            "keep": keep, "labels": batch["labels"]}

  def radius_metrics(self, q, db_codes, db_labels, index):
    """Union of the radius balls of the kept region codes; buckets summed over kept codes."""
    from ml_pipelines.search import hamming
    nq, r = q["keep"].shape
    rel = (q["labels"] @ db_labels.T) > 0
    found = [set() for _ in range(nq)]
    buckets = np.zeros(nq)
    for j in range(r):
      offsets, idx, _, b = index.radius_search(hamming.pack_bits(q["region_codes"][:, j]),
                                               self.radius)
      for i in np.flatnonzero(q["keep"][:, j]):
        found[i].update(idx[offsets[i]:offsets[i + 1]].tolist())
        buckets[i] += b[i]
    precision = np.array([rel[i, list(f)].mean() if f else 0.0 for i, f in enumerate(found)])
    recall = np.array([rel[i, list(f)].sum() / max(rel[i].sum(), 1) for i, f in enumerate(found)])
    return {f"precision@r{self.radius}": float(precision.mean()),
            f"recall@r{self.radius}": float(recall.mean()),
            f"buckets@r{self.radius}": float(buckets.mean()),
            "codes_kept": float(q["keep"].sum(1).mean())}

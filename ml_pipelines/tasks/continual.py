"""Class-incremental learning on `config.stages`: one stage (or two for ACL) per task.

The protocol (`ml_pipelines.data.continual`): a class order (seeded or given), tasks of
``B{base}-Inc{increment}``, labels renamed to their rank in the order. Each stage sets
``task=dict(task_index=t[, phase=...])`` and samples from an index list the task hands the pipeline
at the stage start: the task's training examples plus the exemplar memory (or every seen class for
joint training). At the first stage of task t > 0 the hook, on the host and from the state alone
(so a resumed run repeats nothing and an interrupted one loses nothing):
1. herds the memory for task t-1's classes with the current model (iCaRL, Rebuffi et al. 2017,
   Alg. 4-5; fixed budget, quota M // seen classes);
2. evaluates the model on the test data of tasks 0..t-1: row t-1 of the accuracy matrix;
3. snapshots the model as the frozen teacher (for distillation).
Memory, accuracy matrix and teacher live in the task's `extra` (checkpointed). `evaluate` adds the
current row and reports the summaries of `evaluators.continual` and writes the matrix to
``<workdir>/continual.json``.

Tasks: `class_incremental` (one head over all classes, logits of unseen classes masked):
fine-tuning (memory 0), replay (memory M), joint training (`joint`), iCaRL as CL_Pytorch
``methods/multi_steps/icarl.py`` (CE over the seen classes + KD on the old-class logits at
temperature `kd_temperature`, memory, `classifier="nme"`: nearest mean of exemplars,
``KNN_classify``), and LwF (Li and Hoiem, TPAMI 2017) as that loss without exemplars (`distill` > 0,
memory 0) with the CE over the new classes' logits only (`new_classes_ce`, as PyCIL's LwF;
weight 3 on the KD term there).
`acl` (ACL, MICCAI 2023, GiantJun/CL_Pytorch ``methods/multi_steps/acl.py``): phase "adapters"
(newest adapters + aux head, old classes as "others") and phase "heads" (all heads on a
class-balanced set, all adapter paths), min-"others" inference with task-identification accuracy.
"""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from losses import classification as cls
from losses import continual as cl_losses
from ml_pipelines import tasks
from ml_pipelines.data import continual as protocol
from ml_pipelines.evaluators import continual as cl_eval
from ml_pipelines.tasks.base import Task
from ml_pipelines.trainer import partition

NEG = -1e9


def _stage_task_index(config, i: int) -> int:
  row = config.stages[i]
  row = row.to_dict() if hasattr(row, "to_dict") else dict(row)
  return int(dict(row.get("task", {})).get("task_index", config.task.get("task_index", 0)))


def _labels(source, key: str) -> np.ndarray:
  if hasattr(source, "arrays"):
    return np.asarray(source.arrays[key])
  return np.asarray([source[i][key] for i in range(len(source))])


def _sampler_name(stage_config) -> str:
  sampler = stage_config.data.get("sampler", None)
  return dict(sampler or {}).get("name", "epochs")


def replace_variables(state, params_fn=None, rest_fn=None):
  """`state` with every parameter (trainable and frozen) mapped by `params_fn(all) -> all` and
  `rest` by `rest_fn`, split back in the stage's partition, each leaf on its old sharding."""
  new = dict(state)
  if params_fn is not None:
    merged = partition.merge(state["params"], state["frozen"])
    out = params_fn(jax.tree_util.tree_map(np.asarray, merged))
    mask = {"params": jax.tree_util.tree_map(lambda _: True, state["params"]),
            "frozen": jax.tree_util.tree_map(lambda _: False, state["frozen"])}
    params, frozen = partition.split(out, partition.merge(mask["params"], mask["frozen"]))
    new["params"] = jax.tree_util.tree_map(lambda x, o: jax.device_put(x, o.sharding), params,
                                           state["params"])
    new["frozen"] = jax.tree_util.tree_map(lambda x, o: jax.device_put(x, o.sharding), frozen,
                                           state["frozen"])
  if rest_fn is not None:
    out = rest_fn(jax.tree_util.tree_map(np.asarray, state["rest"]))
    new["rest"] = jax.tree_util.tree_map(lambda x, o: jax.device_put(x, o.sharding), out,
                                         state["rest"])
  return new


def _set_extra(state, **values):
  """`state` with `extra[k] = v`, as fresh buffers on the old leaves' shardings (never aliasing
  a buffer of the state: the train step donates it)."""
  extra = dict(state["extra"])
  for k, v in values.items():
    old = extra[k]
    extra[k] = jax.tree_util.tree_map(
        lambda x, o: jax.device_put(np.array(x, dtype=o.dtype, copy=True), o.sharding), v, old)
  return {**state, "extra": extra}


@tasks.register("class_incremental")
class ClassIncremental(Task):
  """One growing classifier over a class-incremental sequence (see the module docstring).

  Options: num_classes, class_order (a seed, a list of classes, or None for the identity order),
  base_classes, increment, task_index (set per stage), memory_size, joint, distill (weight of the
  KD term; 0 = none), kd_temperature, new_classes_ce (CE over the current task's logits only, as
  LwF), classifier ("linear" | "nme"), image_key, label_key.
  """
  OPTIONS = frozenset({"num_classes", "class_order", "base_classes", "increment", "task_index",
                       "memory_size", "joint", "distill", "kd_temperature", "new_classes_ce",
                       "classifier", "image_key", "label_key"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.num_classes = int(t.num_classes)
    order = t.get("class_order", None)
    if order is None or isinstance(order, int):
      order = protocol.class_order(self.num_classes, order)
    self.order = protocol.check_order(order, self.num_classes)
    self.rank_of = np.argsort(self.order)  # rank_of[class] = position in the order
    self.sizes = protocol.task_sizes(self.num_classes, int(t.get("base_classes", 0)),
                                     int(t.increment))
    self.bounds = protocol.task_bounds(self.sizes)
    self.num_tasks = len(self.sizes)
    self.task_index = int(t.get("task_index", 0))
    if not 0 <= self.task_index < self.num_tasks:
      raise ValueError(f"task_index {self.task_index} outside the {self.num_tasks} tasks.")
    self.memory_size = int(t.get("memory_size", 0))
    protocol.check_budget(self.memory_size, self.num_classes)
    self.joint = bool(t.get("joint", False))
    self.distill = float(t.get("distill", 0.0))
    self.kd_temperature = float(t.get("kd_temperature", 2.0))
    self.new_classes_ce = bool(t.get("new_classes_ce", False))
    self.classifier = t.get("classifier", "linear")
    if self.classifier not in ("linear", "nme"):
      raise ValueError(f"classifier must be 'linear' or 'nme', got {self.classifier!r}.")
    if self.classifier == "nme" and not self.memory_size:
      raise ValueError("classifier='nme' needs exemplars: set memory_size.")
    self.image_key = t.get("image_key", "image")
    self.label_key = t.get("label_key", "label")
    self._train_ranks = None

  # --- protocol -----------------------------------------------------------------------------
  @property
  def uses_teacher(self) -> bool:
    return self.distill > 0

  def ranks(self, labels):
    return jnp.asarray(self.rank_of, jnp.int32)[labels]

  def train_ranks(self, env) -> np.ndarray:
    """[N] class rank of every training example."""
    if self._train_ranks is None:
      source = env.dataset(self.config.data.train_split).source
      self._train_ranks = self.rank_of[_labels(source, self.label_key)]
    return self._train_ranks

  def classes_of(self, t: int) -> np.ndarray:
    return np.arange(self.bounds[t], self.bounds[t + 1])

  def first_stage_of_task(self, stage) -> bool:
    return stage.index == 0 or _stage_task_index(self.config, stage.index - 1) != self.task_index

  # --- state outside the network ------------------------------------------------------------
  def init_extra(self, env, rng, params):
    extra = {"memory": jnp.full([max(self.memory_size, 1)], -1, jnp.int32),
             "acc": jnp.full([self.num_tasks, self.num_tasks], jnp.nan, jnp.float32),
             "task_id_acc": jnp.full([self.num_tasks], jnp.nan, jnp.float32)}
    if self.uses_teacher:
      abstract = nnx.eval_shape(lambda: models.build(self.config.model, seed=self.config.seed))
      rest = nnx.to_pure_dict(nnx.state(abstract, nnx.Not(nnx.Param)))
      extra["teacher"] = {"params": jax.tree_util.tree_map(jnp.copy, params),
                          "rest": jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype),
                                                         rest)}
    return extra

  @functools.cached_property
  def eval_graphdef(self):
    abstract = nnx.eval_shape(lambda: models.build(self.config.model, seed=self.config.seed))
    abstract.eval()
    return nnx.graphdef(abstract)

  def teacher(self, extra):
    t = jax.tree_util.tree_map(jax.lax.stop_gradient, extra["teacher"])
    return nnx.merge(self.eval_graphdef, t["params"], t["rest"])

  # --- host hooks ---------------------------------------------------------------------------
  def start_stage(self, env, state, stage):
    t = self.task_index
    if self.first_stage_of_task(stage) and t > 0:
      if self.memory_size:
        state = _set_extra(state, memory=self.memory_after(env, state, t - 1))
      row, task_id = self.accuracy_row(env, state, t - 1, np.asarray(state["extra"]["memory"]))
      acc = np.asarray(state["extra"]["acc"]).copy()
      acc[t - 1] = row
      tid = np.asarray(state["extra"]["task_id_acc"]).copy()
      tid[t - 1] = task_id
      state = _set_extra(state, acc=acc, task_id_acc=tid)
      if self.uses_teacher:
        params, rest = env.variables(state)
        state = _set_extra(state, teacher={"params": params, "rest": rest})
    if _sampler_name(stage.config) == "index_list":
      env.set_index_list(stage.index, self.stage_indices(env, state))
    return state

  def stage_indices(self, env, state) -> np.ndarray:
    """The training examples of this stage: the task's classes (every seen class when joint) and
    the exemplar memory."""
    ranks = self.train_ranks(env)
    t = self.task_index
    lo = 0 if self.joint else self.bounds[t]
    current = np.flatnonzero((ranks >= lo) & (ranks < self.bounds[t + 1]))
    memory = np.asarray(state["extra"]["memory"])
    return np.concatenate([current, memory[memory >= 0]]).astype(np.int64)

  def feature_fn(self, upto: int):
    """fn(model, batch) -> {"features"} used for herding and class means after task `upto` (one
    function for every task here; ACL's depend on the task)."""
    del upto
    return self._features

  def _features(self, model, batch):
    return {"features": model(batch[self.image_key])[1]}

  def herded(self, env, state, t: int, quota: int) -> dict[int, np.ndarray]:
    """{class of task t: its first `quota` training indices in herding order}, on the features of
    `feature_fn(t)` (eval mode, evaluation preprocessing)."""
    ranks = self.train_ranks(env)
    idx = np.flatnonzero((ranks >= self.bounds[t]) & (ranks < self.bounds[t + 1]))
    feats = env.predict(state, self.feature_fn(t), self.config.data.train_split, indices=idx)
    f, idx = feats["features"], feats["index"]
    out = {}
    for c in self.classes_of(t):
      rows = np.flatnonzero(ranks[idx] == c)
      out[int(c)] = idx[rows[protocol.herding_select(f[rows], quota)]]
    return out

  def memory_after(self, env, state, t: int) -> np.ndarray:
    """The memory once task t's classes are herded in (a pure function of the state)."""
    quota = self.memory_size // int(self.bounds[t + 1])
    return protocol.updated_memory(np.asarray(state["extra"]["memory"]), self.train_ranks(env),
                                   self.classes_of(t), self.herded(env, state, t, quota),
                                   self.memory_size)

  # --- evaluation ---------------------------------------------------------------------------
  def _predict(self, model, batch):
    logits, feats = model(batch[self.image_key])
    return {"logits": logits, "features": feats, "rank": self.ranks(batch[self.label_key])}

  def predictions(self, env, state, upto: int, memory: np.ndarray):
    """(predicted ranks, true ranks, predicted task ids or None) on the test data of tasks
    0..upto."""
    out = env.predict(state, self._predict, self.config.data.eval_split)
    seen = out["rank"] < self.bounds[upto + 1]
    if self.classifier == "nme":
      means = self.class_means(env, state, upto, memory)
      feats = out["features"] / np.maximum(np.linalg.norm(out["features"], axis=1,
                                                          keepdims=True), 1e-12)
      dists = np.linalg.norm(feats[:, None] - means[None], axis=-1)
      pred = np.argmin(dists, axis=1)
    else:
      pred = np.argmax(out["logits"][:, :self.bounds[upto + 1]], axis=1)
    return pred[seen], out["rank"][seen], None

  def class_means(self, env, state, upto: int, memory: np.ndarray) -> np.ndarray:
    """[seen classes, F] normalised means of the normalised exemplar features (CL_Pytorch
    ``cal_class_means``)."""
    ranks = self.train_ranks(env)
    mem = memory[memory >= 0]
    feats = env.predict(state, self.feature_fn(upto), self.config.data.train_split,
                        indices=np.sort(mem))
    f = feats["features"] / np.maximum(np.linalg.norm(feats["features"], axis=1, keepdims=True),
                                       1e-12)
    r = ranks[feats["index"]]
    means = np.stack([f[r == c].mean(0) for c in range(int(self.bounds[upto + 1]))])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)

  def accuracy_row(self, env, state, upto: int, memory: np.ndarray):
    """(A[upto, :] with NaN for unseen tasks, task-identification accuracy or NaN)."""
    pred, rank, task_pred = self.predictions(env, state, upto, memory)
    row = np.full(self.num_tasks, np.nan)
    task_of = np.searchsorted(self.bounds, rank, side="right") - 1
    for j in range(upto + 1):
      row[j] = float(np.mean(pred[task_of == j] == rank[task_of == j]))
    task_id = np.nan if task_pred is None else float(np.mean(task_pred == task_of))
    return row, task_id

  def test_task_sizes(self, env) -> np.ndarray:
    """[T] test examples per task (the weights of the average incremental accuracy)."""
    ranks = self.rank_of[_labels(env.dataset(self.config.data.eval_split).source,
                                 self.label_key)]
    return np.bincount(np.searchsorted(self.bounds, ranks, side="right") - 1,
                       minlength=self.num_tasks)

  def evaluate(self, env, state):
    t = self.task_index
    memory = np.asarray(state["extra"]["memory"])
    if self.memory_size:
      memory = self.memory_after(env, state, t)
    row, task_id = self.accuracy_row(env, state, t, memory)
    acc = np.asarray(state["extra"]["acc"], np.float64)[:t + 1].copy()
    acc[t] = row
    tid = np.asarray(state["extra"]["task_id_acc"], np.float64)[:t + 1].copy()
    tid[t] = task_id
    sizes = self.test_task_sizes(env)
    out = {"accuracy": float(np.sum(row[:t + 1] * sizes[:t + 1]) / np.sum(sizes[:t + 1])),
           **cl_eval.continual_report(np.nan_to_num(acc, nan=0.0), sizes)}
    if not np.isnan(task_id):
      out["task_id_accuracy"] = float(task_id)
    if env.workdir and jax.process_index() == 0:
      with open(os.path.join(env.workdir, "continual.json"), "w") as f:
        json.dump({"task": t, "acc": acc.tolist(), "task_id_acc": tid.tolist(), **out}, f)
    return out

  # --- training -----------------------------------------------------------------------------
  def loss(self, model, batch, rng, extra, step):
    images, rank = batch[self.image_key], self.ranks(batch[self.label_key])
    logits, _ = model(images)
    t = self.task_index
    n_seen = int(self.bounds[t + 1])
    logits = jnp.where(jnp.arange(logits.shape[-1]) < n_seen, logits, NEG)
    if self.new_classes_ce:  # LwF: the new task's logits against its classes
      n_new = int(self.bounds[t])
      ce = jnp.mean(cls.cross_entropy(logits[:, n_new:], jnp.maximum(rank - n_new, 0)))
    else:
      ce = jnp.mean(cls.cross_entropy(logits, rank))
    metrics = {"ce": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == rank)}
    loss = ce
    if self.uses_teacher and t > 0:
      n_old = int(self.bounds[t])
      old_logits, _ = self.teacher(extra)(images)
      kd = jnp.mean(cl_losses.kd_loss(logits[:, :n_old], old_logits[:, :n_old],
                                      self.kd_temperature))
      loss = loss + self.distill * kd
      metrics["kd"] = kd
    return loss, {"metrics": metrics}


@tasks.register("acl")
class ACL(ClassIncremental):
  """ACL on an `acl_net` model (module docstring; CL_Pytorch ``methods/multi_steps/acl.py``).

  Extra option `phase`: "adapters" (phase 1: data = the task's classes + the exemplar memory, old
  classes relabelled "others" (C_t); CE on the newest path's aux head; a task's first stage copies
  adapter t-1 into adapter t, weights and BN statistics) or "heads" (phase 2, t > 0: data = the
  memory + m herded images of each new class, m = M // old classes; loss
  ``sum_i CE(head_i, target_i)``, target_i the within-task class for samples of task i, else C_i,
  a head's term only when the batch holds a sample of task i). Herding uses the newest path's
  features; inference is `evaluators.continual.min_others_predict`.
  """
  OPTIONS = ClassIncremental.OPTIONS | {"phase"}

  def __init__(self, config):
    super().__init__(config)
    self.phase = config.task.get("phase", "adapters")
    if self.phase not in ("adapters", "heads"):
      raise ValueError(f"ACL phase must be 'adapters' or 'heads', got {self.phase!r}.")
    if self.phase == "heads" and self.task_index == 0:
      raise ValueError("ACL task 0 has no 'heads' phase (its head is trained in phase 1).")
    if not self.memory_size:
      raise ValueError("ACL needs an exemplar memory: set memory_size.")
    if tuple(config.model.task_sizes) != tuple(self.sizes):
      raise ValueError(f"model.task_sizes {tuple(config.model.task_sizes)} must equal the "
                       f"protocol's {tuple(self.sizes)}.")
    self._fns = {}

  def start_stage(self, env, state, stage):
    t = self.task_index
    if self.phase == "adapters" and t > 0 and self.first_stage_of_task(stage):
      def copy_previous(tree):
        tree = jax.tree_util.tree_map(np.copy, tree)
        if "adapters" in tree:
          for hook in tree["adapters"].values():
            hook[t] = jax.tree_util.tree_map(np.copy, hook[t - 1])
        return tree
      state = replace_variables(state, copy_previous, copy_previous)
    return super().start_stage(env, state, stage)

  def stage_indices(self, env, state):
    if self.phase == "adapters":
      return super().stage_indices(env, state)
    t = self.task_index
    memory = np.asarray(state["extra"]["memory"])
    quota = self.memory_size // int(self.bounds[t])
    herded = self.herded(env, state, t, quota)
    return np.concatenate([memory[memory >= 0]] + [herded[c] for c in sorted(herded)]
                          ).astype(np.int64)

  def feature_fn(self, upto: int):
    key = ("features", upto)
    if key not in self._fns:
      self._fns[key] = lambda model, batch: {
          "features": model.newest(batch[self.image_key], upto)[1]}
    return self._fns[key]

  def predictions(self, env, state, upto, memory):
    key = ("logits", upto)
    if key not in self._fns:
      self._fns[key] = lambda model, batch: {
          "logits": jnp.concatenate(model.all_heads(batch[self.image_key], upto), -1),
          "rank": self.ranks(batch[self.label_key])}
    out = env.predict(state, self._fns[key], self.config.data.eval_split)
    seen = out["rank"] < self.bounds[upto + 1]
    pred, task, _ = cl_eval.min_others_predict(out["logits"][seen], self.sizes[:upto + 1])
    return pred, out["rank"][seen], task

  def loss(self, model, batch, rng, extra, step):
    images, rank = batch[self.image_key], self.ranks(batch[self.label_key])
    t = self.task_index
    if self.phase == "adapters":
      logits, _ = model.newest(images, t)
      target = jnp.where(rank >= self.bounds[t], rank - self.bounds[t], self.sizes[t])
      loss = jnp.mean(cls.cross_entropy(logits, target))
      return loss, {"metrics": {"accuracy": jnp.mean(jnp.argmax(logits, -1) == target)}}
    loss = 0.0
    for i, logits in enumerate(model.all_heads(images, t)):
      inside = (rank >= self.bounds[i]) & (rank < self.bounds[i + 1])
      target = jnp.where(inside, rank - self.bounds[i], self.sizes[i])
      loss = loss + jnp.where(inside.any(), jnp.mean(cls.cross_entropy(logits, target)), 0.0)
    return loss, {}


@tasks.register("adaptive_kd")
class AdaptiveKD(ClassIncremental):
  """Adaptively integrated KD with prediction uncertainty (Chen et al., arXiv 2301.07316), the
  [inferred] formulation of `losses.continual` (the paper's text was not reachable): for t > 0,
  per sample ``(1 - u) * (KD + feature_weight * L_feat) + u * CE`` with u the teacher's normalised
  entropy over the old classes, L_feat every student block distilling a softmax-weighted mixture of
  all teacher blocks' attention maps (weights = the model's learnable `integration` logits), and
  CutMix among the exemplars of each batch (targets mixed by area; the teacher sees the mixed
  images). Ablation switches (options): `integration` (off: block l distils teacher block l),
  `uncertainty` (off: the fixed sum CE + KD + feature_weight * L_feat), `exemplar_cutmix`.
  Needs `memory_size` and `distill` > 0 (the KD temperature is `kd_temperature`).
  """
  OPTIONS = ClassIncremental.OPTIONS | {"integration", "uncertainty", "exemplar_cutmix",
                                        "cutmix_alpha", "feature_weight"}

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.integration = bool(t.get("integration", True))
    self.uncertainty = bool(t.get("uncertainty", True))
    self.exemplar_cutmix = bool(t.get("exemplar_cutmix", True))
    self.cutmix_alpha = float(t.get("cutmix_alpha", 1.0))
    self.feature_weight = float(t.get("feature_weight", 1.0))
    if self.integration and not config.model.get("integration", False):
      raise ValueError("integration=True needs model.integration=True (the learnable weights).")
    if not self.distill:
      raise ValueError("adaptive_kd distils: set distill > 0.")

  def loss(self, model, batch, rng, extra, step):
    images, rank = batch[self.image_key], self.ranks(batch[self.label_key])
    t = self.task_index
    n_seen, n_old = int(self.bounds[t + 1]), int(self.bounds[t])
    targets = jax.nn.one_hot(rank, self.num_classes)
    if t > 0 and self.exemplar_cutmix:
      images, partner, lam = cl_losses.exemplar_cutmix(rng, images, rank < n_old,
                                                       self.cutmix_alpha)
      targets = lam[:, None] * targets + (1.0 - lam[:, None]) * targets[partner]
    blocks = model.blocks(images)
    logits, _ = model.head(blocks)
    logits = jnp.where(jnp.arange(logits.shape[-1]) < n_seen, logits, NEG)
    ce = cls.soft_cross_entropy(logits, targets)
    metrics = {"ce": jnp.mean(ce), "accuracy": jnp.mean(jnp.argmax(logits, -1) == rank)}
    if t == 0:
      return jnp.mean(ce), {"metrics": metrics}
    teacher = self.teacher(extra)
    t_blocks = teacher.blocks(images)
    t_logits, _ = teacher.head(t_blocks)
    kd = cl_losses.kd_loss(logits[:, :n_old], t_logits[:, :n_old], self.kd_temperature)
    levels = len(blocks)
    weights = (jax.nn.softmax(model.integration.value, axis=-1) if self.integration
               else jnp.eye(levels))
    feat = cl_losses.integrated_feature_loss(blocks, t_blocks, weights)
    u = cl_losses.prediction_uncertainty(t_logits[:, :n_old]) if self.uncertainty else None
    per_sample = cl_losses.uncertainty_weighted(ce, self.distill * kd + self.feature_weight * feat,
                                                u)
    metrics.update(kd=jnp.mean(kd), feature=jnp.mean(feat))
    if u is not None:
      metrics["uncertainty"] = jnp.mean(u)
    return jnp.mean(per_sample), {"metrics": metrics}

"""Visible-infrared person re-identification with SGIEL (Feng et al., CVPR 2023, arXiv 2304.04205;
official jiawei151/SGIEL_VIReID `train.py`), and its plain two-stream baseline.

Batches: `image_vis`, `image_ir`, `shape_vis`, `shape_ir` `[B, H, W, 3]` and `label [B]`: row b of
both modalities shows identity `label[b]` (the code's paired sampler), the shape maps belong to
their images. Model: `models.sgiel.SGIELNet`.

One SGIEL step (the code's normal branch; `losses.reid`):

    L = L_id + L_tri + L_shape + L_kl + w1 L_est + w2 (L_id2 + L_cpmt) + L_orth

with `w1, w2` from the mean per-sample gradient norms of `L_id2 + L_cpmt` and of `L_est` with
respect to the pooled features f_pool (`gradient_norm_weights`). With probability `cutmix_prob`
(0.2) the step is the code's cross-modal CutMix instead: a Beta(1, 1) box, a permutation of the
pairs, each visible image's box taken from the permuted partner's infrared image and vice versa
(shape maps alike), lam recomputed from the box area, and
`L = mix(CE(logit)) + mix(CE(logit_shape)) + L_kl + L_orth`.

The EMA teacher (same network, its own BatchNorm statistics from its own train-mode forwards) is
task state: copied from the student when a run starts (`start_stage`), then
`teacher += a (student - teacher)` with `a` = 1/1000, 1/10000, 1/100000 for epochs < 20, < 85,
later (`steps_per_epoch`), doubled for the classifiers, BNNecks and projections. The code updates it
after the optimizer step; here the same update is made at the start of the next step, before the
teacher's forward (so the teacher it uses is identical; a finished run's stored teacher lacks the
last update).

`baseline=True`: `L = L_id + L_tri + L_kl` only (no shape stream losses, no teacher).
Evaluation: the eval split's `query` images against its gallery, each embedded by its own
modality's stream (`modality`), features `model.embed` averaged with the flipped image's, cosine
distance, `evaluators.reid` (`protocol` "sysu" adds SYSU-MM01's camera rules), averaged over the
split's gallery trials (`gallery_trials`).

Options (config.task): margin, cutmix_prob, steps_per_epoch, baseline, protocol.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from losses import metric_learning
from losses import reid as reid_losses
from ml_pipelines import tasks
from ml_pipelines.evaluators import reid as reid_eval
from ml_pipelines.tasks.base import Task

_FAST_EMA = re.compile(r"classifier|bottleneck|proj")
SGIEL_TERMS = ("id", "id2", "shape", "tri", "kl", "cpmt", "est", "orth", "w1", "w2")


def _ce(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def sgiel_losses(model, teacher_shape: dict, batch, margin: float = 0.3) -> tuple[jax.Array, dict]:
  """The normal SGIEL step's total loss and its terms (module docstring). `model` in train mode;
  `teacher_shape` the EMA teacher's `"shape"` outputs (`zp`, `logit`) on the same batch."""
  y1 = batch["label"]
  y = jnp.concatenate([y1, y1])
  pool, pool_s = model.features(batch["image_vis"], batch["image_ir"], batch["shape_vis"],
                                batch["shape_ir"])
  graphdef, state = nnx.split(model)

  def head_terms(pool):
    m = nnx.merge(graphdef, jax.tree.map(lambda a: a, state))  # fresh variables in this trace
    out = m.heads(pool, pool_s)
    l_c = (_ce(out["rgbir"]["logit2"], y)
           + reid_losses.shape_complementary(out["rgbir"]["logit2"], out["shape"]["zp"], y1))
    l_e = reid_losses.shape_consistency(out["rgbir"]["zp"], teacher_shape["zp"],
                                        teacher_shape["logit"], m.classifier_shape.kernel[...])
    return (l_c, l_e), (out, nnx.state(m))

  (l_c, l_e), vjp_fn, (out, new_state) = jax.vjp(head_terms, pool, has_aux=True)
  nnx.update(model, new_state)
  one, zero = jnp.ones_like(l_c), jnp.zeros_like(l_c)
  w1, w2 = reid_losses.gradient_norm_weights(vjp_fn((one, zero))[0], vjp_fn((zero, one))[0])
  n = y1.shape[0]
  logit = out["rgbir"]["logit"]
  terms = {
      "id": _ce(logit, y), "id2": _ce(out["rgbir"]["logit2"], y),
      "shape": _ce(out["shape"]["logit"], y),
      "tri": metric_learning.batch_hard_triplet(pool, y, margin)[0],
      "kl": reid_losses.cross_modal_alignment(logit[:n], logit[n:]),
      "cpmt": l_c - _ce(out["rgbir"]["logit2"], y), "est": l_e,
      "orth": reid_losses.orthogonality(model.unit_proj()), "w1": w1, "w2": w2}
  total = (terms["id"] + terms["tri"] + terms["shape"] + terms["kl"] + w1 * l_e + w2 * l_c
           + terms["orth"])
  return total, terms


def cutmix_pairs(rng, batch) -> tuple[dict, jax.Array, jax.Array]:
  """The code's cross-modal CutMix: `(mixed batch, partner labels [2n], lam)`. The box is the
  code's `rand_bbox` (cut ratio sqrt(1 - lam), uniform centre, clipped), the partner of visible
  row b is infrared row perm[b] and vice versa."""
  k_lam, k_cx, k_cy, k_perm = jax.random.split(rng, 4)
  n, h, w = batch["image_vis"].shape[:3]
  lam = jax.random.beta(k_lam, 1.0, 1.0)
  cut = jnp.sqrt(1.0 - lam)
  # the code's first image axis is called W (size[2]) and the second H: rows, then columns
  ch, cw = (h * cut).astype(jnp.int32), (w * cut).astype(jnp.int32)
  cy, cx = jax.random.randint(k_cy, (), 0, h), jax.random.randint(k_cx, (), 0, w)
  y0, y1 = jnp.clip(cy - ch // 2, 0, h), jnp.clip(cy + ch // 2, 0, h)
  x0, x1 = jnp.clip(cx - cw // 2, 0, w), jnp.clip(cx + cw // 2, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = ((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1))[None, :, :, None]
  perm = jax.random.permutation(k_perm, n)
  out = dict(batch)
  for vis, ir in (("image_vis", "image_ir"), ("shape_vis", "shape_ir")):
    out[vis] = jnp.where(box, batch[ir][perm], batch[vis])
    out[ir] = jnp.where(box, batch[vis][perm], batch[ir])
  lam = 1.0 - ((y1 - y0) * (x1 - x0)) / (h * w)
  partner = jnp.concatenate([batch["label"][perm], batch["label"][perm]])
  return out, partner, lam


def cutmix_losses(model, batch, partner, lam) -> tuple[jax.Array, dict]:
  y1 = batch["label"]
  y = jnp.concatenate([y1, y1])
  out = model(batch["image_vis"], batch["image_ir"], batch["shape_vis"], batch["shape_ir"])
  n = y1.shape[0]

  def mix(logits):
    return _ce(logits, y) * lam + _ce(logits, partner) * (1.0 - lam)
  logit = out["rgbir"]["logit"]
  terms = {"id": mix(logit), "shape": mix(out["shape"]["logit"]),
           "kl": reid_losses.cross_modal_alignment(logit[:n], logit[n:]),
           "orth": reid_losses.orthogonality(model.unit_proj())}
  return terms["id"] + terms["shape"] + terms["kl"] + terms["orth"], terms


def ema_rate(step, steps_per_epoch: int):
  """The code's EMA rate 1 / ema_w of the epoch the previous step belonged to."""
  epoch = jnp.maximum(step - 1, 0) // steps_per_epoch
  return jnp.where(epoch < 20, 1e-3, jnp.where(epoch < 85, 1e-4, 1e-5))


def ema_update(teacher: dict, student: dict, rate) -> dict:
  """`teacher + a (student - teacher)`, `a` doubled for classifier / bottleneck / projection
  parameters (pure dicts of parameters)."""
  flat_t = nnx.traversals.flatten_mapping(teacher)
  flat_s = nnx.traversals.flatten_mapping(student)
  out = {k: t + (2.0 * rate if _FAST_EMA.search("/".join(map(str, k))) else rate) * (flat_s[k] - t)
         for k, t in flat_t.items()}
  return nnx.traversals.unflatten_mapping(out)


@tasks.register("sgiel")
class SGIEL(Task):
  OPTIONS = frozenset({"margin", "cutmix_prob", "steps_per_epoch", "baseline", "protocol"})

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.margin = float(t.get("margin", 0.3))
    self.cutmix_prob = float(t.get("cutmix_prob", 0.2))
    self.steps_per_epoch = int(t.get("steps_per_epoch", 1000))
    self.baseline = bool(t.get("baseline", False))
    self.protocol = t.get("protocol", "standard")

  def init_extra(self, env, rng, params):
    if self.baseline:
      return None
    import models
    abstract = nnx.eval_shape(lambda: models.build(self.config.model, seed=0))
    rest = nnx.to_pure_dict(nnx.state(abstract, nnx.Not(nnx.Param)))
    zeros = lambda s: jnp.zeros(s.shape, s.dtype)  # noqa: E731
    return {"teacher": {"params": jax.tree.map(jnp.array, params),
                        "rest": jax.tree.map(zeros, rest)}}

  def start_stage(self, env, state, stage):
    """A fresh run's teacher is the student (parameters and batch statistics)."""
    if self.baseline or int(state["step"]) != 0:
      return state
    params, rest = env.variables(state)
    teacher = {"params": jax.tree.map(jnp.array, params), "rest": jax.tree.map(jnp.array, rest)}
    return {**state, "extra": {**state["extra"], "teacher": teacher}}

  def loss(self, model, batch, rng, extra, step):
    if self.baseline:
      return self._baseline_loss(model, batch)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    teacher_params = ema_update(extra["teacher"]["params"], nnx.to_pure_dict(params),
                                ema_rate(step, self.steps_per_epoch))
    t_params, t_rest = jax.tree.map(lambda x: x, params), jax.tree.map(lambda x: x, rest)
    t_params.replace_by_pure_dict(jax.lax.stop_gradient(teacher_params))
    t_rest.replace_by_pure_dict(extra["teacher"]["rest"])
    k_choice, k_mix = jax.random.split(rng)
    use_cutmix = jax.random.uniform(k_choice) < self.cutmix_prob
    mixed, partner, lam = cutmix_pairs(k_mix, batch)
    # the teacher runs on the step's images (mixed ones on a CutMix step), as the code
    inputs = jax.tree.map(lambda a, b: jnp.where(use_cutmix, a, b),
                          {k: mixed[k] for k in ("image_vis", "image_ir", "shape_vis",
                                                 "shape_ir")},
                          {k: batch[k] for k in ("image_vis", "image_ir", "shape_vis",
                                                 "shape_ir")})
    teacher = nnx.merge(graphdef, t_params, t_rest)
    t_out = jax.tree.map(jax.lax.stop_gradient, teacher(
        inputs["image_vis"], inputs["image_ir"], inputs["shape_vis"], inputs["shape_ir"]))
    new_teacher = {"params": teacher_params,
                   "rest": nnx.to_pure_dict(nnx.state(teacher, nnx.Not(nnx.Param)))}
    gd, state = nnx.split(model)

    def normal(state):
      m = nnx.merge(gd, jax.tree.map(lambda a: a, state))
      loss, terms = sgiel_losses(m, t_out["shape"], batch, self.margin)
      return loss, terms, nnx.state(m)

    def mixed_step(state):
      m = nnx.merge(gd, jax.tree.map(lambda a: a, state))
      loss, terms = cutmix_losses(m, {**batch, **inputs}, partner, lam)
      zero = jnp.zeros([], jnp.float32)
      terms = {k: terms.get(k, zero) for k in SGIEL_TERMS}
      return loss, terms, nnx.state(m)

    loss, terms, new_state = jax.lax.cond(use_cutmix, mixed_step, normal, state)
    nnx.update(model, new_state)
    metrics = {**terms, "cutmix": use_cutmix.astype(jnp.float32)}
    return loss, {"metrics": metrics, "extra": {"teacher": new_teacher}}

  def _baseline_loss(self, model, batch):
    y1 = batch["label"]
    y = jnp.concatenate([y1, y1])
    pool, pool_s = model.features(batch["image_vis"], batch["image_ir"], batch["shape_vis"],
                                  batch["shape_ir"])
    out = model.heads(pool, pool_s)
    n = y1.shape[0]
    logit = out["rgbir"]["logit"]
    terms = {"id": _ce(logit, y), "tri": metric_learning.batch_hard_triplet(pool, y,
                                                                           self.margin)[0],
             "kl": reid_losses.cross_modal_alignment(logit[:n], logit[n:])}
    return terms["id"] + terms["tri"] + terms["kl"], {"metrics": terms}

  # --- evaluation ---------------------------------------------------------------------------
  def embed(self, model, batch):
    """Features of each eval image in its own modality's stream, averaged with the flipped image's
    and L2-normalised again (the code's test: `(feat + feat_flip)`, then cosine)."""
    x, is_vis = batch["image"], batch["modality"] == 0

    def both(x, modality):
      f = model.embed(x, modality) + model.embed(x[:, :, ::-1], modality)
      return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    return {"feature": jnp.where(is_vis[:, None], both(x, "visible"), both(x, "infrared")),
            **{k: batch[k] for k in ("label", "camera", "query", "gallery_trials")}}

  def evaluate(self, env, state):
    """Metrics averaged over the eval split's gallery trials (bit t of `gallery_trials`: SYSU-MM01's
    10 random galleries); with several trials also their spread over trials as `<metric>_std`."""
    out = env.predict(state, self.embed, split=self.config.data.eval_split)
    query, gallery = out["query"] == 1, out["query"] == 0
    f = out["feature"]
    dist = -f[query] @ f[gallery].T
    cams = ((out["camera"][query], out["camera"][gallery]) if self.protocol == "sysu"
            else (None, None))
    galleries = reid_eval.trial_galleries(out["gallery_trials"][gallery])
    res = reid_eval.reid_metrics_trials(dist, out["label"][query], out["label"][gallery],
                                        galleries, *cams, protocol=self.protocol,
                                        ranks=(1, 10, 20))
    if len(galleries) == 1:
      return res["mean"]
    return {**res["mean"], **{f"{k}_std": v for k, v in res["std"].items()}}

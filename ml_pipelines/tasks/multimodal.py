"""Audio-visual classification under modality imbalance: one task for every method.

The fused cross-entropy (OGM-GE, Peng et al., CVPR 2022, Eq. 1) is the loss of vanilla, OGM-GE,
AMSS(+) and AGM, whose work happens in the optimizer (optim/): the task passes what
`optim/_multimodal.py` lists in `tx_args` (modality_logits, labels, modality_features;
mie_modality and mie_projectors for MIE) and `grad_terms` for MMPareto. Loss-side methods are options:

- unimodal_loss_weight w: `L = CE(fused) + w * sum_m CE(m)` (MMPareto's `L_mm + sum_u L_u` with w=1);
- grad_terms: name each unimodal CE in `aux["grad_terms"]` (MMPareto);
- pmr_alpha > 0: PMR (Fan et al., CVPR 2023, Eqs. 3-9) prototypical CE on the slower modality;
  prototypes live in `extra` and follow each batch's class means with momentum `pmr_momentum` (the
  official code recomputes them once per epoch over the training set; a per-batch EMA here);
- gblending_weights (audio, visual, fused): G-Blending (Wang et al., CVPR 2020, Eq. 4) weighted sum of
  the heads' losses `sum_k w_k L_k`. With `gblending_every` = n > 0 the weights are re-estimated every
  n steps (a super-epoch) from each head's loss on the training split and on the held-out split
  `gblending_val_split` (Eq. 6: `w_k ~ G_k / O_k^2`, G the drop of validation loss, O the change of
  the validation-minus-train gap since the last estimate; negative weights are clipped to 0 and an
  estimate with no positive weight keeps the previous weights); the first n steps use the initial
  weights (equal when not given);
- umt_teachers {modality: workdir}: UMT (Du et al., ICML 2023, Sec. 4): `CE(fused) + umt_weight * sum_m
  MSE(phi_m, phi_m^teacher)` with the encoder of each modality distilled from the newest checkpoint
  of a unimodal run (same model config, the other modality muted) -- the teachers are frozen and
  run in eval mode; umt_weight 10 as the official code;
- agm_shapley: AGM (Li et al., ICCV 2023; lihong2303/AGM_ICCV2023 model/CREMAD_net.py GradMod) as
  the official code trains it: besides the train-mode pass f(a, v), two eval-mode passes with one
  input zeroed give the Shapley logits `m_a = (f(a, v) - f(0, v) + f(a, 0)) / 2`, `m_v = (f(a, v) -
  f(a, 0) + f(0, v)) / 2`; the loss is `CE(m_a + m_v)`, the modality logits are m_a, m_v, and
  `aux["grad_terms"]` names each one's gradient path (`sum(stop_grad(dL/dout) * m_m)`) so that the
  agm transform can scale it as the code's backward hooks do (optim/agm.py);
- mute_modality "audio" | "visual": that input is zeroed in training and evaluation, which makes a
  unimodal model of the other modality (the demo's visual-only reference, UMT's teachers);
- mie_modality "audio" | "visual": MIE/IGM (arXiv 2407.04587; njustkmg/IJCAI25-IGM train_CREMA.py)
  trains this modality only, set per stage by the config's alternating `stages` (each with a fresh
  optimizer, as the code makes one per stage): on mixup inputs (Beta(mie_mixup_alpha)), with the
  official step loss `(1 - r) * mixupCE(o_m, y, y[perm]) + r * CE(o_m, y)`, o_m =
  cls_m(enc_m(mixed x_m)), r = `mie_flat_ratio` (0.3): the "flat" term is the head on the mixed
  features against the *unmixed* labels (its SAM perturbation, rho = 1e-10, is invisible and left
  out; `mie_flat_ratio=0` with the optimizer's `flat_ratio` > 0 is the paper's SAM form instead).
  The idle encoder keeps its batch statistics (its branch does not run officially). The task's
  state holds the second moments of every head layer's batch-mean input, accumulated over the last
  `mie_collect_steps` steps of each stage (0: the whole stage), and at each stage start it builds
  the new modality's gradient projectors from the previous modality's moments (optim/mie.py,
  tau = `mie_tau`); prediction is the mean of the heads' softmax outputs. Needs
  `model.modality_heads=True`.

Batch keys: `audio` [B, F, T, 1], `visual` [B, T, H, W, 3], `label` [B].
evaluate: `accuracy` (fused), `audio_accuracy`, `visual_accuracy` (argmax of modality_logits), `loss`.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from losses import balancing
from losses import multimodal as mml
from ml_pipelines import tasks
from ml_pipelines.tasks.base import Task
from ml_pipelines.trainer import sharding
from optim import mie as mie_lib
from optim import paths as paths_lib

OPTIONS = frozenset({"unimodal_loss_weight", "grad_terms", "pmr_alpha", "pmr_momentum",
           "gblending_weights", "gblending_every", "gblending_val_split", "umt_teachers",
           "umt_weight", "mute_modality", "mie_modality", "mie_mixup_alpha", "mie_flat_ratio",
           "mie_tau", "mie_collect_steps",
           "agm_shapley"})
MODALITIES = ("audio", "visual")


def _deep_merge(a: dict, b: dict) -> dict:
  """Nested dicts with the leaves of both (b wins where both have one)."""
  out = dict(a)
  for k, v in b.items():
    out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
  return out


@tasks.register("multimodal")
class Multimodal(Task):
  OPTIONS = OPTIONS

  def __init__(self, config):
    super().__init__(config)
    t = config.task
    self.uni_w = float(t.get("unimodal_loss_weight", 0.0))
    self.grad_terms = bool(t.get("grad_terms", False))
    self.agm_shapley = bool(t.get("agm_shapley", False))
    if self.agm_shapley and self.grad_terms:
      raise ValueError("agm_shapley and grad_terms both name aux['grad_terms']; pick one.")
    self.pmr_alpha = float(t.get("pmr_alpha", 0.0))
    self.pmr_momentum = float(t.get("pmr_momentum", 0.2))
    gw = t.get("gblending_weights", None)
    self.gblend_every = int(t.get("gblending_every", 0))
    if gw is None and self.gblend_every:
      gw = (1 / 3, 1 / 3, 1 / 3)
    self.gblend = None if gw is None else jnp.asarray(tuple(gw), jnp.float32)
    self.gblend_val = str(t.get("gblending_val_split", "val"))
    self.umt_teachers = dict(t.get("umt_teachers", None) or {})
    if set(self.umt_teachers) - set(MODALITIES):
      raise KeyError(f"umt_teachers names {sorted(self.umt_teachers)}; modalities are {MODALITIES}.")
    self.umt_w = float(t.get("umt_weight", 10.0))
    self.mute = str(t.get("mute_modality", "") or "")
    if self.mute and self.mute not in MODALITIES:
      raise ValueError(f"mute_modality must be one of {MODALITIES}, not {self.mute!r}.")
    self.mie_modality = str(t.get("mie_modality", "") or "")
    if self.mie_modality and self.mie_modality not in MODALITIES:
      raise ValueError(f"mie_modality must be one of {MODALITIES}, not {self.mie_modality!r}.")
    self.mie_tau = float(t.get("mie_tau", 0.4))
    self.mie_collect = int(t.get("mie_collect_steps", 0))
    self.mie_groups = dict(config.optimizer.get("param_groups", {}))
    self.mie_alpha = float(t.get("mie_mixup_alpha", 1.0))
    self.mie_flat = float(t.get("mie_flat_ratio", 0.3))
    self.num_classes = int(config.model.num_classes)

  # --- state -----------------------------------------------------------------------------------
  def init_extra(self, env, rng, params):
    extra = {}
    if self.pmr_alpha:
      extra["pmr"] = self._init_prototypes(params)
    if self.gblend_every:  # current weights and the heads' losses at the last estimate
      extra["gblend"] = {"weights": self.gblend, "train": jnp.zeros(3), "val": jnp.zeros(3),
                         "estimated": jnp.zeros([], jnp.bool_)}
    if self.mie_modality:  # input moments of every head layer; the projectors of the current stage
      extra["mie"] = {"moments": mie_lib.zero_moments(params, self.mie_groups),
                      "proj": {q: jnp.eye(d, dtype=jnp.float32) for q, (d,) in
                               mie_lib.input_shapes(params, self.mie_groups).items()}}
    if self.umt_teachers:
      extra["umt"] = {m: self._load_teacher(m, wd) for m, wd in sorted(self.umt_teachers.items())}
    return extra or None

  @staticmethod
  def _load_teacher(modality, workdir):
    """The `<modality>_encoder` parameters and (float) batch statistics of a finished run."""
    from ml_pipelines.trainer import checkpoint
    step, saved = checkpoint.load_latest_arrays(workdir)
    name = f"{modality}_encoder"
    floats = lambda tree: jax.tree_util.tree_map(
        lambda x: jnp.asarray(x) if np.issubdtype(x.dtype, np.floating) else None, tree)
    print(f"UMT: {modality} teacher from step {step} of {workdir}", flush=True)
    return {"params": floats(saved["params"][name]), "rest": floats(saved["rest"].get(name, {}))}

  def _init_prototypes(self, params):
    # the feature width D is the input width of the fusion layer ([a; v] for concat: 2 D)
    shapes = {paths_lib.path_str(p): leaf.shape
              for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    d = (shapes["fusion/fc_out/kernel"][0] // 2 if "fusion/fc_out/kernel" in shapes and
         "fusion/fc/kernel" not in shapes and "fusion/fc_x/kernel" not in shapes
         else shapes.get("fusion/fc_x/kernel", shapes.get("fusion/fc/kernel"))[0])
    return {m: jnp.zeros((self.num_classes, d), jnp.float32) for m in MODALITIES}

  # --- UMT teachers ----------------------------------------------------------------------------
  @staticmethod
  def teacher_features(model, modality, teacher, x):
    """phi_m of the frozen teacher: the student's encoder module with the teacher's arrays."""
    from models import audiovisual
    graphdef, state = nnx.split(getattr(model, f"{modality}_encoder"))
    pure = nnx.to_pure_dict(state)

    def overlay(mine, theirs):
      if isinstance(mine, dict):
        return {k: overlay(v, theirs.get(k) if isinstance(theirs, dict) else None)
                for k, v in mine.items()}
      return mine if theirs is None else jax.lax.stop_gradient(theirs).astype(mine.dtype)
    merged = overlay(pure, _deep_merge(teacher["rest"], teacher["params"]))
    nnx.replace_by_pure_dict(state, merged)
    encoder = nnx.merge(graphdef, state)
    encoder.eval()
    return audiovisual.ENCODE[modality](encoder, x)

  # --- training --------------------------------------------------------------------------------
  def _mie_loss(self, model, batch, rng, step):
    labels = batch["label"]
    audio, perm, lam = mml.mixup(rng, batch["audio"], self.mie_alpha)
    visual = (lam * batch["visual"] + (1 - lam) * batch["visual"][perm]).astype(batch["visual"].dtype)
    cur = MODALITIES.index(self.mie_modality)
    # Officially only the current modality's branch runs: the idle encoder's batch statistics stay.
    encoders = [getattr(model, f"{m}_encoder") for m in MODALITIES]
    before = [nnx.to_pure_dict(nnx.state(e, nnx.BatchStat)) for e in encoders]
    out = model(audio, visual)
    for i, (enc, old) in enumerate(zip(encoders, before)):
      state = nnx.state(enc, nnx.BatchStat)
      kept = nnx.to_pure_dict(state) if cur == i else old
      nnx.replace_by_pure_dict(state, kept)
      nnx.update(enc, state)
    per = {m: mml.mie_loss(out["modality_logits"][m], labels, perm, lam, self.mie_flat)
           for m in MODALITIES}
    loss = per[self.mie_modality]
    metrics = {"stage_modality": jnp.float32(cur),
               **{f"{m}_loss": per[m] for m in MODALITIES}}
    return loss, out, metrics

  @staticmethod
  def agm_outputs(model, audio, visual, labels):
    """(model outputs with AGM's Shapley logits, grad_terms): see `agm_shapley` above."""
    out = model(audio, visual)
    model.eval()  # the code's pad passes: eval mode, batch statistics untouched
    pad_v = model(audio, jnp.zeros_like(visual))["logits"]   # f(a, 0)
    pad_a = model(jnp.zeros_like(audio), visual)["logits"]   # f(0, v)
    model.train()
    total = out["logits"]
    per = {"audio": 0.5 * (total - pad_a + pad_v), "visual": 0.5 * (total - pad_v + pad_a)}
    fused = per["audio"] + per["visual"]
    delta = jax.lax.stop_gradient(jax.grad(
        lambda z: jnp.mean(mml.cross_entropy(z, labels)))(fused.astype(jnp.float32)))
    terms = {m: jnp.sum(delta * per[m].astype(jnp.float32)) for m in MODALITIES}
    return {**out, "logits": fused, "modality_logits": per}, terms

  def _inputs(self, batch):
    if not self.mute:
      return batch
    return {**batch, self.mute: jnp.zeros_like(batch[self.mute])}

  def loss(self, model, batch, rng, extra, step):
    batch = self._inputs(batch)
    labels = batch["label"]
    aux = {}
    if self.mie_modality:
      loss, out, metrics = self._mie_loss(model, batch, rng, step)
      collect = (self.mie_collect <= 0) | (step >= self.stage.end - self.mie_collect)
      kernels = [q for q in extra["mie"]["proj"] if q.startswith(f"{self.mie_modality}_")]
      inputs = {k: jax.lax.stop_gradient(v) for k, v in out["head_inputs"].items()}
      aux["extra"] = {**extra, "mie": {**extra["mie"], "moments": mie_lib.accumulate(
          extra["mie"]["moments"], inputs, kernels, collect)}}
    else:
      if self.agm_shapley:
        out, aux["grad_terms"] = self.agm_outputs(model, batch["audio"], batch["visual"], labels)
      else:
        out = model(batch["audio"], batch["visual"])
      fused = jnp.mean(mml.cross_entropy(out["logits"], labels))
      uni = mml.modality_cross_entropy(out["modality_logits"], labels)
      metrics = {"fused_loss": fused, **{f"{m}_loss": l for m, l in uni.items()}}
      if self.gblend is not None:
        weights = extra["gblend"]["weights"] if self.gblend_every else self.gblend
        loss = balancing.gblend_loss(jnp.stack([uni["audio"], uni["visual"], fused]), weights)
        metrics.update({f"gblend_w_{k}": weights[i]
                        for i, k in enumerate(("audio", "visual", "fused"))})
      elif self.umt_teachers:
        teacher = {m: self.teacher_features(model, m, extra["umt"][m], batch[m])
                   for m in self.umt_teachers}
        loss = balancing.umt_loss(fused, {m: out["features"][m] for m in teacher}, teacher,
                                  self.umt_w)
        metrics["umt_distill"] = (loss - fused) / self.umt_w
      else:
        loss = fused + self.uni_w * sum(uni.values())
      if self.grad_terms:
        aux["grad_terms"] = uni
      if self.pmr_alpha:
        feats = out["features"]
        protos = {m: balancing.class_prototypes(jax.lax.stop_gradient(feats[m]), labels,
                                                self.num_classes, extra["pmr"][m],
                                                self.pmr_momentum)
                  for m in MODALITIES}
        reg, coef = balancing.pmr_regularizer(feats, protos, labels, self.pmr_alpha)
        loss = loss + reg
        metrics.update(pmr_audio_coef=coef[0], pmr_visual_coef=coef[1])
        aux["extra"] = {**extra, "pmr": protos}
    logits = out["modality_logits"]
    metrics["accuracy"] = jnp.mean(jnp.argmax(self._predict(out), -1) == labels)
    tx_args = {"modality_logits": {m: jax.lax.stop_gradient(l) for m, l in logits.items()},
               "labels": labels,
               "modality_features": {m: jax.lax.stop_gradient(f) for m, f in out["features"].items()}}
    if self.mie_modality:
      proj = extra["mie"]["proj"]
      tx_args["mie_modality"] = jnp.int32(MODALITIES.index(self.mie_modality))
      tx_args["mie_projectors"] = {q: p for q, p in proj.items()
                                   if q.startswith(f"{self.mie_modality}_")}
    aux.update(metrics=metrics, tx_args=tx_args)
    return loss, aux

  # --- evaluation ------------------------------------------------------------------------------
  def _predict(self, out):
    if self.mie_modality:  # MIE inference: mean of the unimodal softmax outputs
      return sum(jax.nn.softmax(out["modality_logits"][m].astype(jnp.float32)) for m in MODALITIES)
    return out["logits"]

  def eval_metrics(self, model, batch):
    batch = self._inputs(batch)
    labels = batch["label"]
    out = model(batch["audio"], batch["visual"])
    res = {"loss": mml.cross_entropy(out["logits"], labels),
           "accuracy": (jnp.argmax(self._predict(out), -1) == labels).astype(jnp.float32)}
    for m in MODALITIES:
      res[f"{m}_accuracy"] = (jnp.argmax(out["modality_logits"][m], -1) == labels
                              ).astype(jnp.float32)
    return res

  # --- G-Blending weight re-estimation (host side, every gblending_every steps) -----------------
  def head_losses(self, model, batch):
    """Per-example cross-entropy of the audio, visual and fused heads (eval mode), [B] each."""
    batch = self._inputs(batch)
    out = model(batch["audio"], batch["visual"])
    res = {f"{m}_ce": mml.cross_entropy(out["modality_logits"][m], batch["label"])
           for m in MODALITIES}
    res["fused_ce"] = mml.cross_entropy(out["logits"], batch["label"])
    return res

  def _mean_head_losses(self, env, state, split):
    out = env.predict(state, self.head_losses, split=split)
    return np.asarray([np.mean(out[f"{k}_ce"]) for k in ("audio", "visual", "fused")], np.float32)

  def start_stage(self, env, state, stage):
    """MIE: the projectors of the modality starting now, from the input moments the previous stage
    collected (identity in the first stage); that modality's own moments restart."""
    if not self.mie_modality or stage.index == 0:
      return state
    params, _ = env.variables(state)
    mie = state["extra"]["mie"]
    proj = {**mie["proj"], **mie_lib.stage_projectors(mie["moments"], params, self.mie_groups,
                                                       self.mie_modality, self.mie_tau)}
    mine = set(mie_lib.kernels_of(params, self.mie_groups, self.mie_modality))
    moments = {q: jnp.zeros_like(m) if q in mine else m for q, m in mie["moments"].items()}
    extra = {**state["extra"], "mie": {"moments": moments, "proj": proj}}
    return {**state, "extra": jax.device_put(extra, sharding.replicated(env.mesh))}

  def after_step(self, env, state, step):
    if not self.gblend_every or step % self.gblend_every:
      return state
    g = state["extra"]["gblend"]
    train = self._mean_head_losses(env, state, self.config.data.train_split)
    val = self._mean_head_losses(env, state, self.gblend_val)
    weights = np.asarray(g["weights"])
    if bool(g["estimated"]):
      w = np.asarray(balancing.gblend_weights(np.asarray(g["train"]), np.asarray(g["val"]),
                                              train, val))
      if w.sum() > 0:
        weights = w.astype(np.float32)
    new = {"weights": weights, "train": train, "val": val, "estimated": np.asarray(True)}
    state = dict(state)
    state["extra"] = {**state["extra"], "gblend": jax.tree_util.tree_map(
        lambda x, old: jax.device_put(jnp.asarray(x, old.dtype), old.sharding), new, g)}
    return state

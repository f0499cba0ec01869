r"""AMSS / AMSS+: adaptive masking of subnetworks by modal significance (Jiang et al., "Learning to
Rebalance Multi-Modal Optimization by Adaptively Masking Subnetworks", TPAMI 2025, arXiv 2404.08347;
official code njustkmg/TPAMI-AMSS, AMSS/train_test.py and AMSS_IT/train_test_IT.py).

Modal significance per batch (`modal_caculate_MI` of the code), for two modalities (a, v) = the
sorted modality names:
  audio-visual (`variant="audio_visual"`, T = 0.2):
    H_Y = CE(p_lab, p_lab): the batch label histogram over classes 0..max(y) used as logits *and*
          soft target (a quirk of the code, kept: `-sum_c p_c log softmax(p)_c`);
    score_m = -CE(logits_m, y) (batch mean);  H_m = mean_i entropy(softmax(feature_m,i)) (nats);
    r_m = (score_m + H_Y + 0.5) / H_m.
  image-text (`variant="image_text"`, T = 0.5):
    H_Y = -sum_c p_c log2(p_c + 1e-8);  r_m = score_m + H_Y.
  coeff_a = e^{r_v/T} / (e^{r_v/T} + e^{r_a/T}),  coeff_v = e^{r_a/T} / (...)  (computed as written, so
  float32 overflow gives NaN -> 0.5, as in the code); NaN -> 0.5, else clamp to [0.1, 0.9]; if
  `score_m + H_Y + 0.5 <= 0` for either modality both are 0.5.
Masking, per selected kernel of modality m (4-D, in m's group, path matching `kernels`; None: every
4-D kernel of the group), one decision per output filter i: the last axis of a Flax HWIO kernel
(`layout="HWIO"`), the first of a PyTorch OIHW one (`layout="OIHW"`); a kernel whose spatial axes in
the declared layout are implausible (> 11) raises instead of being masked along the wrong axis.
The code masks `'layer' in name and 'conv' in name`, i.e. the layer1..layer4 block convs, no stem,
no downsample: the audio-visual model declares that set (models/audiovisual.py `MASKED_KERNELS`,
`layer\d+/\d+/conv\d+/kernel$` on its ResNet names) and the amss configs pass it:
  gn_i = sum_{h,w,c} g^2,  p_i = gn_i / sum_j gn_j   (uniform when all are zero)
  keep k = ceil(N * coeff_m) filters sampled without replacement with probabilities p
  (Gumbel-top-k, the same law as `torch.multinomial(p, k, replacement=False)`)
  AMSS:  mask_i = 1 on kept filters, 0 elsewhere;
  AMSS+: mask_i = 1 / (p_i + 1/N + bias) on kept filters (smoothed inverse probability; bias = 0 for
         audio-visual, 0.2 in the image-text commands).
Not replicated: the code's fusion-layer (`fc_out`) masks, which the audio-visual script computes but
never applies, and the image-text script's row-wise fusion and per-head BERT attention masks.

Extra args: `modality_logits` {m: [B, C]}, `labels` [B] int, `rng`, and for the audio-visual variant
`modality_features` {m: [B, D]} (each encoder's pooled feature, 512-d for ResNet-18).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

import optim
from optim import _multimodal as mm
from optim.paths import path_str

VARIANTS = {"audio_visual": 0.2, "image_text": 0.5}


def _limit(c):
  return jnp.where(jnp.isnan(c), 0.5, jnp.clip(c, 0.1, 0.9))


def label_entropy(labels: jax.Array, num_classes: int, variant: str) -> jax.Array:
  """H_Y of the code: the CE quirk (audio-visual) or the base-2 entropy (image-text)."""
  counts = jnp.zeros(num_classes, jnp.float32).at[labels].add(1.0)
  p = counts / labels.shape[0]
  if variant == "image_text":
    return -jnp.sum(p * jnp.log2(p + 1e-8))
  valid = jnp.arange(num_classes) <= jnp.max(labels)  # torch.bincount length is max(y) + 1
  lsm = jax.nn.log_softmax(jnp.where(valid, p, -jnp.inf))
  return -jnp.sum(jnp.where(valid, p * lsm, 0.0))


def significance(logits: dict, labels: jax.Array, features: dict | None, names: list[str],
                 variant: str = "audio_visual", temperature: float | None = None) -> jax.Array:
  """`[coeff_a, coeff_v]` (keep ratios) for the two sorted modality names."""
  t = VARIANTS[variant] if temperature is None else temperature
  a, v = names
  num_classes = logits[a].shape[-1]
  hy = label_entropy(labels, num_classes, variant)

  def score(m):
    lg = logits[m].astype(jnp.float32)
    return jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(lg), labels[:, None].astype(jnp.int32), axis=-1))

  s = {m: score(m) for m in names}
  if variant == "audio_visual":
    def feat_entropy(m):
      f = features[m].astype(jnp.float32)
      return -jnp.mean(jnp.sum(jax.nn.softmax(f) * jax.nn.log_softmax(f), axis=-1))
    r = {m: (s[m] + hy + 0.5) / feat_entropy(m) for m in names}
    degenerate = (s[a] + hy + 0.5 <= 0) | (s[v] + hy + 0.5 <= 0)
  else:
    r = {m: s[m] + hy for m in names}
    degenerate = (s[a] + hy + 0.5 < 0) | (s[v] + hy + 0.5 <= 0)
  ea, ev = jnp.exp(r[a] / t), jnp.exp(r[v] / t)
  coeff = jnp.stack([_limit(ev / (ev + ea)), _limit(ea / (ev + ea))])
  return jnp.where(degenerate, 0.5, coeff)


LAYOUTS = {"HWIO": -1, "OIHW": 0}  # the output-filter axis of a conv kernel
MAX_KERNEL_SIZE = 11


def filter_axis(shape, layout: str, path: str = "") -> int:
  """The output-filter axis of a 4-D kernel of `shape` in `layout`; raises when the layout's spatial
  axes are implausible (e.g. an OIHW kernel declared HWIO)."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
  spatial = shape[:2] if layout == "HWIO" else shape[2:]
  if max(spatial) > MAX_KERNEL_SIZE:
    other = "OIHW" if layout == "HWIO" else "HWIO"
    raise ValueError(f"AMSS: kernel {path} of shape {tuple(shape)} is not {layout} (spatial axes "
                     f"{tuple(spatial)}); pass layout={other!r} if that is its layout")
  return LAYOUTS[layout] % 4


def importance(g: jax.Array) -> jax.Array:
  """p_i = gn_i / sum gn over output filters (last axis); uniform if the gradient is all zero."""
  gn = jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(-1, g.shape[-1]), axis=0)
  total = jnp.sum(gn)
  return jnp.where(total > 0, gn / jnp.where(total > 0, total, 1.0), 1.0 / g.shape[-1])


def kept_count(n: int, coeff) -> jax.Array:
  """k = ceil(N * coeff), in [0, N]."""
  return jnp.clip(jnp.ceil(n * jnp.asarray(coeff, jnp.float32)), 0, n).astype(jnp.int32)


def sample_without_replacement(gumbel: jax.Array, p: jax.Array, k) -> jax.Array:
  """Bool [N]: k indices drawn without replacement with probabilities p (Gumbel-top-k), given
  standard Gumbel noise [N]."""
  logp = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)
  rank = jnp.argsort(jnp.argsort(-(logp + gumbel)))
  return rank < k


def filter_mask(gumbel, g, coeff, plus: bool, bias: float = 0.0) -> jax.Array:
  """The per-output-filter mask [N] of one kernel gradient (AMSS 0/1 or AMSS+ inverse probability);
  `gumbel`: standard Gumbel noise [N]."""
  n = g.shape[-1]
  p = importance(g)
  kept = sample_without_replacement(gumbel, p, kept_count(n, coeff))
  value = 1.0 / (p + 1.0 / n + bias) if plus else jnp.ones_like(p)
  return jnp.where(kept, value, 0.0)


def _amss(param_groups, plus: bool, variant: str, temperature, kernels: str | None, bias: float,
          layout: str):
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
  pattern = re.compile(kernels) if kernels else None

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, modality_logits, labels, rng,
                modality_features=None, **extra_args):
    del params, extra_args
    names = mm.modalities(param_groups, modality_logits)
    if len(names) != 2:
      raise ValueError(f"AMSS's significance is defined for two modalities, got {names}")
    if variant == "audio_visual" and modality_features is None:
      raise KeyError("AMSS (audio_visual) needs tx_args['modality_features'] = {modality: [B, D]}")
    coeff = significance(modality_logits, labels, modality_features, names, variant, temperature)
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
    group = treedef.flatten_up_to(mm.labels(updates, param_groups))
    chosen = [i for i, ((p, g), l) in enumerate(zip(flat, group))
              if g.ndim == 4 and l in names and (pattern is None or pattern.search(path_str(p)))]
    axes = [filter_axis(flat[i][1].shape, layout, path_str(flat[i][0])) for i in chosen]
    noise = mm.split_draw(jax.random.gumbel, rng,
                          [(flat[i][1].shape[a],) for i, a in zip(chosen, axes)])
    out = [g for _, g in flat]
    for i, a, z in zip(chosen, axes, noise):
      g = jnp.moveaxis(out[i], a, -1)
      m = filter_mask(z, g, coeff[names.index(group[i])], plus, bias)
      out[i] = jnp.moveaxis((g.astype(jnp.float32) * m).astype(g.dtype), -1, a)
    return jax.tree_util.tree_unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@optim.register("amss")
def amss(*, param_groups: dict[str, str], variant: str = "audio_visual",
         temperature: float | None = None, kernels: str | None = None, layout: str = "HWIO"
         ) -> optax.GradientTransformationExtraArgs:
  """AMSS: 0/1 masks on the sampled output filters of each modality's selected conv kernels."""
  return _amss(param_groups, False, variant, temperature, kernels, 0.0, layout)


@optim.register("amss_plus")
def amss_plus(*, param_groups: dict[str, str], variant: str = "audio_visual",
              temperature: float | None = None, kernels: str | None = None, bias: float = 0.0,
              layout: str = "HWIO") -> optax.GradientTransformationExtraArgs:
  """AMSS+: smoothed inverse-probability masks `1 / (p_i + 1/N + bias)` on the sampled filters."""
  return _amss(param_groups, True, variant, temperature, kernels, bias, layout)

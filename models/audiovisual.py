"""Audio-visual classifier: two encoders and a fusion head (OGM-GE, Peng et al., CVPR 2022, Sec. 3 and
official code GeWu-Lab/OGM-GE_CVPR2022 models/basic_model.py, models/fusion_modules.py).

- audio encoder: ResNet (ResNet-18 in the papers) on a log spectrogram [B, F, T, 1], features pooled
  over space (adaptive_avg_pool2d);
- visual encoder: the same ResNet on every one of T frames [B, T, H, W, 3] as one (B*T) batch, features
  pooled over (T, H, W) (adaptive_avg_pool3d in the code);
- fusion (`fusion/`): sum `fc_x(a) + fc_y(v)`; concat `fc_out([a; v])`; film `fc_out(gamma * v + beta)`,
  `gamma, beta = split(fc(a))`; gated `fc_out(sigmoid(fc_x(a)) * fc_y(v))`.

Per-modality logits ("modality_logits", what OGM-GE/AMSS/AGM/MMPareto read): sum -> `fc_x(a)`,
`fc_y(v)`; concat -> the modality's slice of fc_out, `out_a = a W_a + b/2`, `out_v = v W_v + b/2`
(main.py). FiLM and gated have no such slice, so they (and `modality_heads=True`) use separate
per-modality heads `audio_head`, `visual_head` (MIE's Linear(D,256)-ReLU-Linear(256,64)-Linear(64,C)
with `head_hidden=(256, 64)`, a single Linear with `head_hidden=()`).

`activation`: the encoders' ("relu"; "gelu" for AMSS's ResNet-18, njustkmg/TPAMI-AMSS backbone.py).

Module names `audio_encoder`, `visual_encoder`, `fusion`, `audio_head`, `visual_head` are what config
param_groups regexes match.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import linear
from models.resnet import ResNet

FUSIONS = ("sum", "concat", "film", "gated")
MODALITIES = ("audio", "visual")
# The model's parameter groups (path regexes) that the balancing transforms act on: each modality's
# encoder, or its encoder and its own head (MIE); and the kernels AMSS masks: the residual blocks'
# convs of each encoder (the official `'layer' in name and 'conv' in name`: no stem, no downsample).
PARAM_GROUPS = {m: f"{m}_encoder/" for m in MODALITIES}
HEAD_PARAM_GROUPS = {m: f"{m}_(encoder|head)/" for m in MODALITIES}
MASKED_KERNELS = r"_encoder/layer\d+/\d+/conv\d+/kernel$"


class Fusion(nnx.Module):
  """One of the OGM-GE fusion heads; `__call__(a, v) -> (fused logits, {m: logits} or None)`."""

  def __init__(self, kind: str, dim: int, num_classes: int, *, dtype, rngs: nnx.Rngs):
    if kind not in FUSIONS:
      raise ValueError(f"fusion {kind!r} not in {FUSIONS}")
    self.kind = kind
    if kind == "sum":
      self.fc_x = linear(dim, num_classes, dtype=dtype, rngs=rngs)
      self.fc_y = linear(dim, num_classes, dtype=dtype, rngs=rngs)
    elif kind == "concat":
      self.fc_out = linear(2 * dim, num_classes, dtype=dtype, rngs=rngs)
    elif kind == "film":
      self.fc = linear(dim, 2 * dim, dtype=dtype, rngs=rngs)
      self.fc_out = linear(dim, num_classes, dtype=dtype, rngs=rngs)
    else:
      self.fc_x = linear(dim, dim, dtype=dtype, rngs=rngs)
      self.fc_y = linear(dim, dim, dtype=dtype, rngs=rngs)
      self.fc_out = linear(dim, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, a, v):
    if self.kind == "sum":
      out_a, out_v = self.fc_x(a), self.fc_y(v)
      return out_a + out_v, {"audio": out_a, "visual": out_v}
    if self.kind == "concat":
      d = a.shape[-1]
      w, b = self.fc_out.kernel[...], self.fc_out.bias[...]
      out = self.fc_out(jnp.concatenate([a, v], -1))
      out_a = a @ w[:d].astype(a.dtype) + b.astype(a.dtype) / 2
      out_v = v @ w[d:].astype(v.dtype) + b.astype(v.dtype) / 2
      return out, {"audio": out_a, "visual": out_v}
    if self.kind == "film":
      gamma, beta = jnp.split(self.fc(a), 2, axis=-1)
      return self.fc_out(gamma * v + beta), None
    gate = jax.nn.sigmoid(self.fc_x(a))
    return self.fc_out(gate * self.fc_y(v)), None


class Head(nnx.Module):
  """Per-modality classifier: Linear layers with ReLU after the first (MIE's AudioVideo heads)."""

  def __init__(self, dim: int, hidden: tuple[int, ...], num_classes: int, *, dtype, rngs):
    sizes = (dim, *hidden, num_classes)
    self.layers = nnx.List([linear(i, o, dtype=dtype, rngs=rngs) for i, o in zip(sizes, sizes[1:])])

  def __call__(self, x, record=None, prefix=""):
    for i, layer in enumerate(self.layers):
      if record is not None:
        record[f"{prefix}layers/{i}/kernel"] = jnp.mean(x.astype(jnp.float32), 0)
      x = layer(x)
      if i == 0 and len(self.layers) > 1:
        x = jax.nn.relu(x)
    return x


def encode_audio(encoder, audio):
  """[B, F, T, 1] -> [B, D]: the encoder's feature map averaged over space."""
  return jnp.mean(encoder.features(audio), axis=(1, 2))


def encode_visual(encoder, visual):
  """[B, T, H, W, 3] -> [B, D]: every frame through the encoder, averaged over (T, H, W)."""
  b, t = visual.shape[:2]
  fv = encoder.features(visual.reshape((b * t,) + visual.shape[2:]))
  return jnp.mean(fv.reshape((b, t) + fv.shape[1:]), axis=(1, 2, 3))


ENCODE = {"audio": encode_audio, "visual": encode_visual}


class AudioVisual(nnx.Module):
  """Two ResNet encoders + fusion. `__call__(audio, visual)` returns a dict:
  logits [B, C], modality_logits {audio, visual: [B, C]}, features {audio, visual: [B, D]}, and
  `head_inputs` {Dense-kernel path: [d_in] batch-mean input} for each per-modality head (MIE)."""

  def __init__(self, *, num_classes: int, fusion: str = "concat", depths=(2, 2, 2, 2),
               width: int = 64, modality_heads: bool = False, head_hidden=(),
               activation: str = "relu", dtype=jnp.float32, rngs: nnx.Rngs):
    self.audio_encoder = ResNet("basic", tuple(depths), in_channels=1, num_classes=None,
                                width=width, dtype=dtype, activation=activation, rngs=rngs)
    self.visual_encoder = ResNet("basic", tuple(depths), in_channels=3, num_classes=None,
                                 width=width, dtype=dtype, activation=activation, rngs=rngs)
    dim = self.audio_encoder.num_features
    self.fusion = Fusion(fusion, dim, num_classes, dtype=dtype, rngs=rngs)
    self.modality_heads = modality_heads or fusion in ("film", "gated")
    if self.modality_heads:
      hidden = tuple(head_hidden)
      self.audio_head = Head(dim, hidden, num_classes, dtype=dtype, rngs=rngs)
      self.visual_head = Head(dim, hidden, num_classes, dtype=dtype, rngs=rngs)

  def encode(self, audio, visual):
    return encode_audio(self.audio_encoder, audio), encode_visual(self.visual_encoder, visual)

  def __call__(self, audio, visual):
    a, v = self.encode(audio, visual)
    logits, per = self.fusion(a, v)
    out = {"logits": logits, "features": {"audio": a, "visual": v}, "head_inputs": {}}
    if self.modality_heads:
      rec = out["head_inputs"]
      per = {"audio": self.audio_head(a, rec, "audio_head/"),
             "visual": self.visual_head(v, rec, "visual_head/")}
    out["modality_logits"] = per
    return out


@models.register("av_resnet18")
def av_resnet18(*, rngs: nnx.Rngs, **kw) -> AudioVisual:
  """Two ResNet-18 encoders (512-d features) and a fusion head, as OGM-GE / AMSS / MIE."""
  return AudioVisual(depths=(2, 2, 2, 2), rngs=rngs, **kw)


@models.register("av_small")
def av_small(*, rngs: nnx.Rngs, width: int = 8, depths=(1, 1, 1, 1), **kw) -> AudioVisual:
  """The same model with one block per stage and narrow widths, for the CPU demo and tests."""
  return AudioVisual(depths=depths, width=width, rngs=rngs, **kw)

"""The Stable Diffusion UNet (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"), as diffusers' `UNet2DConditionModel` (NHWC here), with activation taps.

eps = UNet(z_t, t, c): sinusoidal time embedding -> MLP; conv_in; down blocks (ResNet blocks, each
followed by a cross-attention transformer in `CrossAttnDownBlock2D`, then a stride-2 conv); a mid
block (resnet, transformer, resnet); up blocks on the concatenated skips (nearest x2 + conv);
GN, SiLU, conv_out. Constructor arguments carry diffusers' config names, so a `unet/config.json`
builds the matching model (`weights.load_component`). Defaults are SD-1.5's; SDXL (Podell et al.
2023) is the same network by configuration (`SDXL`: per-level transformer depths and heads, linear
projections) plus its added embedding of the pooled text and the size / crop ids (`added=`).

    eps, taps = unet(z_t, t, text, taps=frozenset({"up-level1-repeat1-vit-block0-cross-q"}))

`taps` and `attention` are static: jit them as static arguments or close over them. ControlNet
residuals enter through `down_residuals` / `mid_residual` (diffusers' `down_block_additional_
residuals`, `mid_block_additional_residual`).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import conv
from models.diffusion.layers import (Downsample2D, ResnetBlock2D, TimestepEmbedding,
                                     Transformer2DModel, Upsample2D, group_norm,
                                     timestep_embedding)
from models.diffusion.taps import Recorder

SD15 = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)


# SDXL-base (`stabilityai/stable-diffusion-xl-base-1.0` unet/config.json): the same network with
# three levels, linear projections, per-level heads and transformer depths, 2048-d context (two
# text encoders' states concatenated) and the "text_time" added embedding.
SDXL = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2,
            up_block_types=("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",), layers_per_block=2,
            cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816, norm_num_groups=32)


def _per_block(value, n):
  return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


class DownBlock(nnx.Module):
  """`CrossAttnDownBlock2D` (attention) or `DownBlock2D`: resnets[, attentions][, downsamplers]."""

  def __init__(self, cin, cout, n, temb, groups, eps, attention, heads, context_dim, depth,
               linear_projection, downsample, *, rngs):
    self.resnets = nnx.List([ResnetBlock2D(cin if j == 0 else cout, cout, temb, groups, eps,
                                           rngs=rngs) for j in range(n)])
    self.attentions = nnx.List([Transformer2DModel(cout, heads, context_dim, groups, depth,
                                                   linear_projection, rngs=rngs)
                                for _ in range(n)] if attention else [])
    self.downsamplers = nnx.List([Downsample2D(cout, rngs=rngs)] if downsample else [])

  def __call__(self, x, temb, context, rec, tap):
    skips = []
    for j, resnet in enumerate(self.resnets):
      x = resnet(x, temb, rec, f"{tap}-repeat{j}-res")
      if self.attentions:
        x = self.attentions[j](x, context, rec, f"{tap}-repeat{j}-vit", "down")
      skips.append(x)
    for down in self.downsamplers:
      x = down(x, rec, f"{tap}-downsampler")
      skips.append(x)
    return x, skips


class UpBlock(nnx.Module):
  """`CrossAttnUpBlock2D` or `UpBlock2D`: each resnet takes the last skip concatenated."""

  def __init__(self, cin, cprev, cout, n, temb, groups, eps, attention, heads, context_dim, depth,
               linear_projection, upsample, *, rngs):
    def resnet(j):
      skip = cin if j == n - 1 else cout
      return ResnetBlock2D((cprev if j == 0 else cout) + skip, cout, temb, groups, eps, rngs=rngs)
    self.resnets = nnx.List([resnet(j) for j in range(n)])
    self.attentions = nnx.List([Transformer2DModel(cout, heads, context_dim, groups, depth,
                                                   linear_projection, rngs=rngs)
                                for _ in range(n)] if attention else [])
    self.upsamplers = nnx.List([Upsample2D(cout, rngs=rngs)] if upsample else [])

  def __call__(self, x, skips, temb, context, rec, tap):
    for j, resnet in enumerate(self.resnets):
      x = resnet(jnp.concatenate([x, skips.pop()], axis=-1), temb, rec, f"{tap}-repeat{j}-res")
      if self.attentions:
        x = self.attentions[j](x, context, rec, f"{tap}-repeat{j}-vit", "up")
    for up in self.upsamplers:
      x = up(x, rec, f"{tap}-upsampler")
    return x


class MidBlock(nnx.Module):
  """`UNetMidBlock2DCrossAttn`: resnet, transformer, resnet."""

  def __init__(self, c, temb, groups, eps, heads, context_dim, depth, linear_projection, *, rngs):
    self.resnets = nnx.List([ResnetBlock2D(c, c, temb, groups, eps, rngs=rngs) for _ in range(2)])
    self.attentions = nnx.List([Transformer2DModel(c, heads, context_dim, groups, depth,
                                                   linear_projection, rngs=rngs)])

  def __call__(self, x, temb, context, rec):
    x = self.resnets[0](x, temb, rec, "mid-repeat0-res")
    x = self.attentions[0](x, context, rec, "mid-vit", "mid")
    return self.resnets[1](x, temb, rec, "mid-repeat1-res")


class UNetEncoder(nnx.Module):
  """What the UNet and the ControlNet share: time embedding, conv_in, down and mid blocks."""

  def __init__(self, *, in_channels=4,
               block_out_channels: Sequence[int] = SD15["block_out_channels"],
               down_block_types: Sequence[str] = SD15["down_block_types"], layers_per_block=2,
               cross_attention_dim=768, attention_head_dim=8, num_attention_heads=None,
               norm_num_groups=32, norm_eps=1e-5, transformer_layers_per_block=1,
               use_linear_projection=False, flip_sin_to_cos=True, freq_shift=0,
               addition_embed_type=None, addition_time_embed_dim=None,
               projection_class_embeddings_input_dim=None, rngs: nnx.Rngs):
    ch = tuple(block_out_channels)
    n = len(ch)
    self.flip_sin_to_cos, self.freq_shift, self.channels = flip_sin_to_cos, freq_shift, ch
    self.heads = _per_block(num_attention_heads or attention_head_dim, n)
    self.depths = _per_block(transformer_layers_per_block, n)
    self.time_embedding = TimestepEmbedding(ch[0], 4 * ch[0], rngs=rngs)
    if addition_embed_type not in (None, "text_time"):
      raise ValueError(f"unsupported addition_embed_type {addition_embed_type!r}")
    self.addition_time_embed_dim = addition_time_embed_dim
    if addition_embed_type:  # SDXL: pooled text + sinusoids of the six size / crop ids
      self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, 4 * ch[0],
                                             rngs=rngs)
    self.conv_in = conv(in_channels, ch[0], 3, rngs=rngs)
    common = dict(temb=4 * ch[0], groups=norm_num_groups, eps=norm_eps,
                  context_dim=cross_attention_dim, linear_projection=use_linear_projection)
    self.down_blocks = nnx.List([
        DownBlock(ch[max(i - 1, 0)], ch[i], layers_per_block,
                  attention=kind.startswith("CrossAttn"), heads=self.heads[i],
                  depth=self.depths[i], downsample=i < n - 1, **common, rngs=rngs)
        for i, kind in enumerate(down_block_types)])
    self.mid_block = MidBlock(ch[-1], heads=self.heads[-1], depth=self.depths[-1], **common,
                              rngs=rngs)
    self._common = common

  def embed_time(self, timestep, batch, added=None):
    """MLP(sinusoids(t)), plus for SDXL (`addition_embed_type="text_time"`) MLP([text_embeds,
    sinusoids(time_ids)]) from `added = {"text_embeds": [B, P], "time_ids": [B, 6]}`."""
    t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
    dtype = self.conv_in.kernel.dtype
    emb = timestep_embedding(t, self.channels[0], self.flip_sin_to_cos, self.freq_shift)
    emb = self.time_embedding(emb.astype(dtype))
    if self.addition_time_embed_dim:
      ids = timestep_embedding(added["time_ids"].reshape(-1), self.addition_time_embed_dim,
                               self.flip_sin_to_cos, self.freq_shift).reshape(batch, -1)
      emb = emb + self.add_embedding(
          jnp.concatenate([added["text_embeds"], ids], axis=-1).astype(dtype))
    return emb

  def encode(self, sample, temb, context, rec=None, cond=None):
    """conv_in (+ `cond`), the down blocks; returns (x, skips) before the mid block."""
    if rec is not None:
      rec.put("unet-in", sample)
    x = self.conv_in(sample)
    if cond is not None:
      x = x + cond
    if rec is not None:
      rec.put("unet-after-conv-in", x)
    skips = [x]
    for i, block in enumerate(self.down_blocks):
      x, s = block(x, temb, context, rec, f"down-level{i}")
      skips += s
    return x, skips


class UNet(UNetEncoder):
  """eps-prediction UNet; `__call__` returns (eps, {tap id: activation})."""

  def __init__(self, *, out_channels=4, up_block_types: Sequence[str] = SD15["up_block_types"],
               layers_per_block=2, rngs: nnx.Rngs, **kw):
    super().__init__(layers_per_block=layers_per_block, rngs=rngs, **kw)
    ch, n = self.channels, len(self.channels)
    rev, heads, depths = ch[::-1], self.heads[::-1], self.depths[::-1]
    self.up_blocks = nnx.List([
        UpBlock(rev[min(i + 1, n - 1)], rev[max(i - 1, 0)], rev[i], layers_per_block + 1,
                attention=kind.startswith("CrossAttn"), heads=heads[i], depth=depths[i],
                upsample=i < n - 1, **self._common, rngs=rngs)
        for i, kind in enumerate(up_block_types)])
    self.conv_norm_out = group_norm(ch[0], self._common["groups"], self._common["eps"], rngs=rngs)
    self.conv_out = conv(ch[0], out_channels, 3, rngs=rngs)

  def __call__(self, sample, timestep, context, *, taps=frozenset(), attention=(),
               down_residuals=None, mid_residual=None, added=None):
    rec = Recorder(taps, attention, sample.shape[1]) if (taps or attention) else None
    temb = self.embed_time(timestep, sample.shape[0], added)
    x, skips = self.encode(sample, temb, context, rec)
    if down_residuals is not None:
      skips = [s + r for s, r in zip(skips, down_residuals, strict=True)]
    x = self.mid_block(x, temb, context, rec)
    if mid_residual is not None:
      x = x + mid_residual
    for i, block in enumerate(self.up_blocks):
      x = block(x, skips, temb, context, rec, f"up-level{i}")
    x = self.conv_out(jax.nn.silu(self.conv_norm_out(x)))
    if rec is None:
      return x, {}
    rec.put("unet-out", x)
    return x, rec.finish()


UNET_OPTIONS = ("in_channels", "out_channels", "block_out_channels", "down_block_types",
                "up_block_types", "layers_per_block", "cross_attention_dim", "attention_head_dim",
                "num_attention_heads", "norm_num_groups", "norm_eps",
                "transformer_layers_per_block", "use_linear_projection", "flip_sin_to_cos",
                "freq_shift", "addition_embed_type", "addition_time_embed_dim",
                "projection_class_embeddings_input_dim")


def options_from_diffusers(config: dict, allowed=UNET_OPTIONS) -> dict:
  """Our constructor arguments from a diffusers `config.json` (the keys we support); a config
  using a feature we do not build (class embeddings, ...) fails by name."""
  unsupported = {k: v for k, v in config.items()
                 if k in ("addition_embed_type", "class_embed_type", "encoder_hid_dim",
                          "time_embedding_type", "only_cross_attention", "mid_block_type")
                 and v not in (None, False, "positional", "UNetMidBlock2DCrossAttn", "text_time")}
  if unsupported:
    raise ValueError(f"unsupported diffusers UNet options: {unsupported}")
  return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in allowed}


@models.register("sdxl_unet")
def sdxl_unet(*, rngs: nnx.Rngs, **kw) -> UNet:
  """The SDXL-base UNet: `__call__(..., added={"text_embeds": [B, 1280], "time_ids": [B, 6]})`."""
  return UNet(**{**SDXL, **kw}, rngs=rngs)


@models.register("sd_unet")
def sd_unet(*, rngs: nnx.Rngs, **kw) -> UNet:
  """SD-1.5 UNet (diffusers defaults, cross_attention_dim 768); diffusers options override."""
  return UNet(**{**SD15, **kw}, rngs=rngs)

"""ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models"),
diffusers `ControlNetModel`, NHWC: a copy of the UNet's encoder half whose input adds an embedding
of the condition image (edges for `lllyasviel/sd-controlnet-canny`), with a zero-initialised 1x1
conv
on every skip and on the mid output. Its outputs are added to the UNet's skips and mid activation:

    down, mid = controlnet(z_t, t, text, cond_image)    # cond_image in [0, 1], NHWC, full size
    eps, taps = unet(z_t, t, text, down_residuals=down, mid_residual=mid)
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

import models
from models._vision_layers import conv
from models.diffusion.unet import SD15, UNET_OPTIONS, UNetEncoder


class ControlNetConditioningEmbedding(nnx.Module):
  """conv_in, SiLU, then per level (conv 3x3, SiLU, conv 3x3 stride 2, SiLU), zero conv_out."""

  def __init__(self, cin, cout, channels, *, rngs):
    self.conv_in = conv(cin, channels[0], 3, rngs=rngs)
    blocks = []
    for a, b in zip(channels[:-1], channels[1:]):
      blocks += [conv(a, a, 3, rngs=rngs), conv(a, b, 3, 2, rngs=rngs)]
    self.blocks = nnx.List(blocks)
    self.conv_out = conv(channels[-1], cout, 3, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.silu(self.conv_in(x))
    for block in self.blocks:
      x = jax.nn.silu(block(x))
    return self.conv_out(x)


class ControlNet(UNetEncoder):
  """`__call__(sample, t, context, cond, scale=1.0)` -> (down residuals, mid residual)."""

  def __init__(self, *, conditioning_channels=3,
               conditioning_embedding_out_channels: Sequence[int] = (16, 32, 96, 256),
               rngs: nnx.Rngs, **kw):
    super().__init__(rngs=rngs, **kw)
    self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
        conditioning_channels, self.channels[0], tuple(conditioning_embedding_out_channels),
        rngs=rngs)
    zero = nnx.initializers.zeros
    skips = [self.channels[0]]
    for i, block in enumerate(self.down_blocks):
      skips += [self.channels[i]] * (len(block.resnets) + len(block.downsamplers))
    self.controlnet_down_blocks = nnx.List(
        [conv(c, c, 1, kernel_init=zero, rngs=rngs) for c in skips])
    self.controlnet_mid_block = conv(self.channels[-1], self.channels[-1], 1, kernel_init=zero,
                                     rngs=rngs)

  def __call__(self, sample, timestep, context, cond, scale: float = 1.0):
    temb = self.embed_time(timestep, sample.shape[0])
    x, skips = self.encode(sample, temb, context, cond=self.controlnet_cond_embedding(cond))
    x = self.mid_block(x, temb, context, None)
    down = [proj(s) * scale for proj, s in zip(self.controlnet_down_blocks, skips, strict=True)]
    return down, self.controlnet_mid_block(x) * scale


CONTROLNET_OPTIONS = tuple(o for o in UNET_OPTIONS if o not in ("out_channels", "up_block_types")
                           ) + ("conditioning_channels", "conditioning_embedding_out_channels")


@models.register("sd_controlnet")
def sd_controlnet(*, rngs: nnx.Rngs, **kw) -> ControlNet:
  """The SD-1.5 ControlNet (`lllyasviel/sd-controlnet-*` config); diffusers options override."""
  base = {k: v for k, v in SD15.items() if k not in ("out_channels", "up_block_types")}
  return ControlNet(**{**base, **kw}, rngs=rngs)

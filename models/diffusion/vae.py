"""The Stable Diffusion VAE (diffusers `AutoencoderKL`), NHWC: encoder to the latent distribution,
decoder back to pixels. Names follow diffusers (`encoder/down_blocks/0/resnets/0/conv1`, ...).

    mean, logvar = vae.encode(x)                 # x in [-1, 1]
    z0 = (mean + exp(logvar / 2) * eps) * scaling_factor        (SD: 0.18215)
    x = vae.decode(z0 / scaling_factor)
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models._vision_layers import conv
from models.diffusion.layers import Attention, Downsample2D, ResnetBlock2D, Upsample2D, group_norm


class VAEAttention(Attention):
  """Single-head self-attention over pixels with a group norm and a residual (the VAE mid block)."""

  def __init__(self, c, groups, *, rngs):
    super().__init__(c, 1, qkv_bias=True, rngs=rngs)
    self.group_norm = group_norm(c, groups, 1e-6, rngs=rngs)

  def __call__(self, x):
    b, h, w, c = x.shape
    y = super().__call__(self.group_norm(x).reshape(b, h * w, c))
    return x + y.reshape(b, h, w, c)


class VAEMidBlock(nnx.Module):
  def __init__(self, c, groups, *, rngs):
    self.resnets = nnx.List([ResnetBlock2D(c, c, None, groups, 1e-6, rngs=rngs) for _ in range(2)])
    self.attentions = nnx.List([VAEAttention(c, groups, rngs=rngs)])

  def __call__(self, x):
    return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class CoderBlock(nnx.Module):
  """`DownEncoderBlock2D` / `UpDecoderBlock2D`: resnets, then an optional down/up sampler."""

  def __init__(self, cin, cout, n, groups, *, down: bool, resample: bool, rngs):
    self.resnets = nnx.List([ResnetBlock2D(cin if j == 0 else cout, cout, None, groups, 1e-6,
                                           rngs=rngs) for j in range(n)])
    name = "downsamplers" if down else "upsamplers"
    layer = (Downsample2D(cout, asymmetric=True, rngs=rngs) if down
             else Upsample2D(cout, rngs=rngs))
    setattr(self, name, nnx.List([layer] if resample else []))
    self.down = down

  def __call__(self, x):
    for resnet in self.resnets:
      x = resnet(x)
    for layer in (self.downsamplers if self.down else self.upsamplers):
      x = layer(x)
    return x


class Encoder(nnx.Module):
  def __init__(self, cin, cout, ch, n, groups, *, rngs):
    self.conv_in = conv(cin, ch[0], 3, rngs=rngs)
    self.down_blocks = nnx.List([
        CoderBlock(ch[max(i - 1, 0)], ch[i], n, groups, down=True, resample=i < len(ch) - 1,
                   rngs=rngs) for i in range(len(ch))])
    self.mid_block = VAEMidBlock(ch[-1], groups, rngs=rngs)
    self.conv_norm_out = group_norm(ch[-1], groups, 1e-6, rngs=rngs)
    self.conv_out = conv(ch[-1], 2 * cout, 3, rngs=rngs)

  def __call__(self, x):
    x = self.conv_in(x)
    for block in self.down_blocks:
      x = block(x)
    x = self.mid_block(x)
    return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class Decoder(nnx.Module):
  def __init__(self, cin, cout, ch, n, groups, *, rngs):
    rev = ch[::-1]
    self.conv_in = conv(cin, rev[0], 3, rngs=rngs)
    self.mid_block = VAEMidBlock(rev[0], groups, rngs=rngs)
    self.up_blocks = nnx.List([
        CoderBlock(rev[max(i - 1, 0)], rev[i], n + 1, groups, down=False,
                   resample=i < len(ch) - 1, rngs=rngs) for i in range(len(ch))])
    self.conv_norm_out = group_norm(ch[0], groups, 1e-6, rngs=rngs)
    self.conv_out = conv(ch[0], cout, 3, rngs=rngs)

  def __call__(self, z):
    x = self.mid_block(self.conv_in(z))
    for block in self.up_blocks:
      x = block(x)
    return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class AutoencoderKL(nnx.Module):
  def __init__(self, *, in_channels=3, out_channels=3, latent_channels=4,
               block_out_channels: Sequence[int] = (128, 256, 512, 512), layers_per_block=2,
               norm_num_groups=32, scaling_factor=0.18215, rngs: nnx.Rngs):
    ch = tuple(block_out_channels)
    self.scaling_factor = scaling_factor
    self.encoder = Encoder(in_channels, latent_channels, ch, layers_per_block, norm_num_groups,
                           rngs=rngs)
    self.quant_conv = conv(2 * latent_channels, 2 * latent_channels, 1, rngs=rngs)
    self.post_quant_conv = conv(latent_channels, latent_channels, 1, rngs=rngs)
    self.decoder = Decoder(latent_channels, out_channels, ch, layers_per_block, norm_num_groups,
                           rngs=rngs)

  def encode(self, x):
    """(mean, logvar) of the latent posterior; logvar clipped to [-30, 20] as diffusers."""
    mean, logvar = jnp.split(self.quant_conv(self.encoder(x)), 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def sample_latent(self, x, key):
    """z0 = (mean + exp(logvar / 2) eps) * scaling_factor, eps ~ N(0, I) drawn from `key`."""
    mean, logvar = self.encode(x)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return (mean + jnp.exp(0.5 * logvar) * eps) * self.scaling_factor

  def decode(self, z):
    """Pixels in about [-1, 1] from an unscaled latent."""
    return self.decoder(self.post_quant_conv(z))


VAE_OPTIONS = ("in_channels", "out_channels", "latent_channels", "block_out_channels",
               "layers_per_block", "norm_num_groups", "scaling_factor")


@models.register("sd_vae")
def sd_vae(*, rngs: nnx.Rngs, **kw) -> AutoencoderKL:
  """The SD-1.5 VAE (`stable-diffusion-v1-5/vae` config); any diffusers option overrides."""
  return AutoencoderKL(**kw, rngs=rngs)

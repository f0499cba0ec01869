"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): a text transformer and an image tower (ViT or ModifiedResNet) mapped into one
embedding space, logits `exp(t) <I/|I|, T/|T|>` (Sec. 2.3, Fig. 3). Layout and numerics follow
openai/CLIP `clip/model.py` and mlfoundations/open_clip (`model.py`, `transformer.py`,
`modified_resnet.py`), so their state dicts load with the `open_clip` converter (below). NHWC
images.

Towers, each usable alone:
- `TextTransformer`: token + learned positional embedding, causal pre-LN transformer, `ln_final`;
  `hidden_states(tokens)` are the per-token states after `ln_final` (Stable Diffusion 1.5 conditions
  on these, from the ViT-L/14 text tower), `__call__(tokens)` the end-of-text state (the position of
  the largest id, as CLIP) times `text_projection`. `hidden_from_embeddings` takes token embeddings
  directly (CoOp-style learned prompts).
- `VisionTransformer`: patch conv without bias, class token, positional embedding, `ln_pre`,
  transformer, `ln_post`; `tokens(x)` gives every token after `ln_post` [B, 1 + N, width] (per-frame
  video features), `__call__(x)` the class token times `proj`.
- `ModifiedResNet`: 3-conv stem + 2x2 average pool, bottlenecks whose stride is an average pool
  (anti-aliasing; also on the shortcut), and `AttentionPool2d`: one multi-head attention over
  [mean token; HW tokens] + positional embedding whose mean-token output is the image feature.
  PVP's variants (Jinx630/Pseudo-Visual-Prompt `clip/model.py`): `use_pos=False` drops the
  positional embedding; a grid other than the trained one interpolates it bicubically exactly as
  PyTorch `F.interpolate(scale_factor=(H + 0.1) / s, mode="bicubic")` does; `dense(x)` is
  DenseCLIP's per-position feature `c_proj(v_proj(x_hw))` (Rao et al. 2022).

`CLIP.encode_image(images)` (NHWC float32, already normalised with CLIP's mean/std),
`CLIP.encode_text(tokens)` (int32 [B, L], `models.clip_tokenizer.tokenize`), `CLIP.logit_scale`
(the learned log temperature, init log(1/0.07)).

Registered: `clip_rn50`, `clip_vit_b32`, `clip_vit_b16`, `clip_vit_l14` (OpenAI's sizes, QuickGELU
as the OpenAI weights need) and `clip_tiny_rn`, `clip_tiny_vit` for tests and demos; the towers
of ViT-B/32 alone for the video models, `clip_vit_b32_visual` (`FrameTokens`: per-frame tokens) and
`clip_vit_b32_text` (`TextTokens`: per-token states, end-of-text pooling), which the `open_clip`
converter loads when held as `vision` and `text`.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from models import convert
from models._vision_layers import (Attention, Mlp, batch_norm, conv, gelu, layer_norm, linear,
                                   register_variants, run_block)

MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation (RGB in [0, 1])
STD = (0.26862954, 0.26130258, 0.27577711)


def quick_gelu(x):
  """OpenAI CLIP's activation: x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def _normal(std):
  return nnx.initializers.normal(std)


# --- transformer (both towers) --------------------------------------------------------------------
class ResidualAttentionBlock(nnx.Module):
  """x + attn(ln_1(x)), then + mlp(ln_2(x)) (CLIP's `ResidualAttentionBlock`; LayerNorm eps
  1e-5)."""

  def __init__(self, width, heads, *, act, causal, dtype, rngs):
    self.causal = causal
    self.ln_1 = layer_norm(width, dtype=dtype, rngs=rngs)
    self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
    self.ln_2 = layer_norm(width, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(width, 4 * width, act=act, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln_1(x), is_causal=self.causal)
    return x + self.mlp(self.ln_2(x))


class Transformer(nnx.Module):
  def __init__(self, width, layers, heads, *, act, causal, dtype, remat=False, rngs):
    self.remat = remat
    self.resblocks = nnx.List([ResidualAttentionBlock(width, heads, act=act, causal=causal,
                                                      dtype=dtype, rngs=rngs)
                               for _ in range(layers)])

  def __call__(self, x):
    for block in self.resblocks:
      x = run_block(block, x, self.remat)
    return x


def _reinit(lin: nnx.Linear, std: float, rngs: nnx.Rngs, zero_bias: bool = False):
  """N(0, std^2) kernel (and zero bias): new variables rather than writes into traced ones."""
  lin.kernel = nnx.Param(std * jax.random.normal(rngs.params(), lin.kernel.shape))
  if zero_bias:
    lin.bias = nnx.Param(jnp.zeros(lin.bias.shape))


def _init_text_like(transformer: Transformer, width: int, layers: int, rngs: nnx.Rngs):
  """open_clip `TextTransformer.init_parameters`: attention in/out and MLP std by depth."""
  proj_std = width ** -0.5 * (2 * layers) ** -0.5
  for block in transformer.resblocks:
    for lin, std in ((block.attn.qkv, width ** -0.5), (block.attn.proj, proj_std),
                     (block.mlp.fc1, (2 * width) ** -0.5), (block.mlp.fc2, proj_std)):
      _reinit(lin, std, rngs, zero_bias=True)


def end_of_text(states, tokens):
  """[B, L, D] states -> [B, D], each row's state at its end-of-text token (the largest id, as
  CLIP)."""
  eot = jnp.argmax(tokens, axis=-1)
  return jnp.take_along_axis(states, eot[:, None, None], axis=1)[:, 0]


# --- text tower -----------------------------------------------------------------------------------
class TextTransformer(nnx.Module):
  """CLIP's text encoder; `output_dim=None` leaves out `text_projection` (per-token use only)."""

  def __init__(self, *, width=512, layers=12, heads=8, output_dim: int | None = 512,
               context_length=77, vocab_size=49408, quick_gelu_act=True, dtype=jnp.float32,
               remat=False, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.dtype, self.context_length = dtype, context_length
    self.token_embedding = nnx.Embed(vocab_size, width, embedding_init=_normal(0.02), rngs=rngs)
    self.positional_embedding = nnx.Param(_normal(0.01)(rngs.params(), (context_length, width)))
    self.transformer = Transformer(width, layers, heads, act=quick_gelu if quick_gelu_act else gelu,
                                   causal=True, dtype=dtype, remat=remat, rngs=rngs)
    _init_text_like(self.transformer, width, layers, rngs)
    self.ln_final = layer_norm(width, dtype=dtype, rngs=rngs)
    self.text_projection = (nnx.Param(_normal(width ** -0.5)(rngs.params(), (width, output_dim)))
                            if output_dim else None)

  def hidden_from_embeddings(self, x):
    """[B, L, width] token embeddings -> states after ln_final (L <= context_length)."""
    x = x.astype(self.dtype) + self.positional_embedding[: x.shape[1]].astype(self.dtype)
    return self.ln_final(self.transformer(x))

  def hidden_states(self, tokens):
    """int [B, L] -> [B, L, width], the per-token states after ln_final."""
    return self.hidden_from_embeddings(self.token_embedding(tokens))

  def project(self, states):
    return states @ self.text_projection[...].astype(states.dtype)

  def pool(self, states, tokens):
    """The end-of-text state of each row, projected: [B, D]."""
    return self.project(end_of_text(states, tokens))

  def __call__(self, tokens):
    return self.pool(self.hidden_states(tokens), tokens)


# --- ViT image tower ------------------------------------------------------------------------------
class VisionTransformer(nnx.Module):
  """CLIP's ViT: patches (conv without bias) + class token + positional embedding, ln_pre,
  transformer, ln_post; class token times `proj`."""

  def __init__(self, *, image_size=224, patch_size=16, width=768, layers=12, heads=12,
               output_dim=512, quick_gelu_act=True, dtype=jnp.float32, remat=False,
               rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.dtype = dtype
    scale = width ** -0.5
    self.conv1 = conv(3, width, patch_size, patch_size, padding=0, use_bias=False, dtype=dtype,
                      rngs=rngs)
    grid = image_size // patch_size
    self.class_embedding = nnx.Param(scale * jax.random.normal(rngs.params(), (width,)))
    self.positional_embedding = nnx.Param(
        scale * jax.random.normal(rngs.params(), (grid * grid + 1, width)))
    self.ln_pre = layer_norm(width, dtype=dtype, rngs=rngs)
    self.transformer = Transformer(width, layers, heads, act=quick_gelu if quick_gelu_act else gelu,
                                   causal=False, dtype=dtype, remat=remat, rngs=rngs)
    self.ln_post = layer_norm(width, dtype=dtype, rngs=rngs)
    self.proj = nnx.Param(scale * jax.random.normal(rngs.params(), (width, output_dim)))

  def tokens(self, x):
    """NHWC images -> [B, 1 + N, width]: class token then patches (row-major), after ln_post."""
    x = self.conv1(x.astype(self.dtype))
    b, h, w, c = x.shape
    cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (b, 1, c))
    x = jnp.concatenate([cls, x.reshape(b, h * w, c)], axis=1)
    x = self.ln_pre(x + self.positional_embedding[...].astype(x.dtype))
    return self.ln_post(self.transformer(x))

  def __call__(self, x):
    return self.tokens(x)[:, 0] @ self.proj[...].astype(self.dtype)


# --- ModifiedResNet image tower -------------------------------------------------------------------
def avg_pool(x, s: int):
  """nn.AvgPool2d(s) on NHWC: s x s windows, stride s, trailing rows/columns dropped."""
  b, h, w, c = x.shape
  h2, w2 = h // s, w // s
  return x[:, :h2 * s, :w2 * s].reshape(b, h2, s, w2, s, c).mean(axis=(2, 4))


def _conv(cin, cout, k, *, dtype, rngs):
  return conv(cin, cout, k, 1, use_bias=False, dtype=dtype, rngs=rngs)


class Bottleneck(nnx.Module):
  """1x1, 3x3, [avg-pool stride], 1x1 (x4); the shortcut is avg-pool + 1x1 conv + BN where the
  shape changes."""
  expansion = 4

  def __init__(self, cin, planes, stride, *, dtype, rngs):
    self.stride = stride
    cout = planes * self.expansion
    self.conv1 = _conv(cin, planes, 1, dtype=dtype, rngs=rngs)
    self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(planes, planes, 3, dtype=dtype, rngs=rngs)
    self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
    self.conv3 = _conv(planes, cout, 1, dtype=dtype, rngs=rngs)
    self.bn3 = batch_norm(cout, dtype=dtype, rngs=rngs)
    self.bn3.scale = nnx.Param(jnp.zeros(cout))  # open_clip init_parameters: last BN starts at 0
    self.has_downsample = stride > 1 or cin != cout
    if self.has_downsample:
      self.downsample_conv = _conv(cin, cout, 1, dtype=dtype, rngs=rngs)
      self.downsample_bn = batch_norm(cout, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = jax.nn.relu(self.bn2(self.conv2(y)))
    if self.stride > 1:
      y = avg_pool(y, self.stride)
    y = self.bn3(self.conv3(y))
    s = x
    if self.has_downsample:
      s = self.downsample_bn(self.downsample_conv(avg_pool(x, self.stride) if self.stride > 1
                                                  else x))
    return jax.nn.relu(y + s)


def bicubic_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
  """[n_out, n_in] weights of PyTorch's bicubic interpolation (a = -0.75, align_corners=False,
  border indices clamped) when `F.interpolate` is given `scale_factor=scale`: output i reads the
  source coordinate (i + 0.5) / scale - 0.5."""
  a = -0.75
  cc1 = lambda t: ((a + 2) * t - (a + 3)) * t * t + 1
  cc2 = lambda t: ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    src = (i + 0.5) / scale - 0.5
    i0 = math.floor(src)
    t = src - i0
    for off, wgt in zip((-1, 0, 1, 2), (cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t))):
      m[i, min(max(i0 + off, 0), n_in - 1)] += wgt
  return m.astype(np.float32)


def interpolate_positions(pos, h: int, w: int):
  """PVP's `interpolate_pos_encoding`: the [1 + s*s, C] table for an h x w grid (unchanged when
  h = w and h*w = s*s), patch part resized bicubically with scale (h + 0.1) / s, (w + 0.1) / s."""
  s = math.isqrt(pos.shape[0] - 1)
  if h * w == s * s and h == w:
    return pos
  grid = pos[1:].reshape(s, s, -1)
  rows = jnp.asarray(bicubic_matrix(s, h, (h + 0.1) / s))
  cols = jnp.asarray(bicubic_matrix(s, w, (w + 0.1) / s))
  grid = jnp.einsum("ia,jb,abc->ijc", rows, cols, grid, precision=jax.lax.Precision.HIGHEST)
  return jnp.concatenate([pos[:1], grid.reshape(h * w, -1)], axis=0)


class AttentionPool2d(nnx.Module):
  """Multi-head attention over [mean; x_1..x_HW] (+ positional embedding): `__call__` gives the
  mean token's output [B, out] and every position's output [B, HW, out]."""

  def __init__(self, spatial, dim, heads, output_dim, *, dtype, rngs):
    self.num_heads, self.dtype = heads, dtype
    self.positional_embedding = nnx.Param(
        jax.random.normal(rngs.params(), (spatial * spatial + 1, dim)) / dim ** 0.5)
    std = dim ** -0.5
    init = dict(dtype=dtype, rngs=rngs)
    self.q_proj = linear(dim, dim, **init)
    self.k_proj = linear(dim, dim, **init)
    self.v_proj = linear(dim, dim, **init)
    self.c_proj = linear(dim, output_dim, **init)
    for lin in (self.q_proj, self.k_proj, self.v_proj, self.c_proj):  # open_clip init_parameters
      _reinit(lin, std, rngs)

  def __call__(self, x, use_pos: bool = True):
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    if use_pos:
      x = x + interpolate_positions(self.positional_embedding[...], h, w).astype(x.dtype)
    split = lambda t: t.reshape(b, h * w + 1, self.num_heads, c // self.num_heads)
    out = jax.nn.dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                       split(self.v_proj(x)))
    out = self.c_proj(out.reshape(b, h * w + 1, c))
    return out[:, 0], out[:, 1:]

  def dense(self, x):
    """DenseCLIP's local features: c_proj(v_proj(x)) at every position, [B, H, W, out]."""
    return self.c_proj(self.v_proj(x))


class ModifiedResNet(nnx.Module):
  """CLIP's ResNet: `features(x)` is the layer4 map [B, H/32, W/32, 32 width], `__call__(x,
  use_pos=True)` its attention-pooled feature [B, output_dim]."""

  def __init__(self, *, layers: Sequence[int] = (3, 4, 6, 3), width=64, image_size=224,
               heads=32, output_dim=1024, dtype=jnp.float32, remat=False, rngs: nnx.Rngs):
    dtype = jnp.dtype(dtype)
    self.dtype, self.remat = dtype, remat
    init = dict(dtype=dtype, rngs=rngs)
    self.conv1 = conv(3, width // 2, 3, 2, use_bias=False, **init)
    self.bn1 = batch_norm(width // 2, **init)
    self.conv2 = _conv(width // 2, width // 2, 3, **init)
    self.bn2 = batch_norm(width // 2, **init)
    self.conv3 = _conv(width // 2, width, 3, **init)
    self.bn3 = batch_norm(width, **init)
    cin = width
    for i, n in enumerate(layers):
      planes = width * 2 ** i
      blocks = []
      for j in range(n):
        blocks.append(Bottleneck(cin, planes, 2 if (i > 0 and j == 0) else 1, **init))
        cin = planes * Bottleneck.expansion
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim, **init)

  def features(self, x):
    x = x.astype(self.dtype)
    for cv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
      x = jax.nn.relu(bn(cv(x)))
    x = avg_pool(x, 2)
    for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in layer:
        x = run_block(block, x, self.remat)
    return x

  def __call__(self, x, use_pos: bool = True):
    return self.attnpool(self.features(x), use_pos)[0]


# --- the two-tower model --------------------------------------------------------------------------
class CLIP(nnx.Module):
  """Image and text towers into `embed_dim`; the image tower is a ModifiedResNet when
  `vision_layers` is a sequence (blocks per stage), else a ViT with that many blocks."""

  def __init__(self, embed_dim=512, *, image_size=224, vision_layers: int | Sequence[int] = 12,
               vision_width=768, vision_patch_size=16, vision_head_width=64,
               context_length=77, vocab_size=49408, text_width=512, text_heads=8,
               text_layers=12, quick_gelu_act=True, dtype=jnp.float32, remat=False,
               rngs: nnx.Rngs):
    common = dict(dtype=dtype, remat=remat, rngs=rngs)
    if isinstance(vision_layers, (tuple, list)):
      self.visual = ModifiedResNet(layers=tuple(vision_layers), width=vision_width,
                                   image_size=image_size,
                                   heads=vision_width * 32 // vision_head_width,
                                   output_dim=embed_dim, **common)
    else:
      self.visual = VisionTransformer(image_size=image_size, patch_size=vision_patch_size,
                                      width=vision_width, layers=vision_layers,
                                      heads=vision_width // vision_head_width,
                                      output_dim=embed_dim, quick_gelu_act=quick_gelu_act,
                                      **common)
    self.text = TextTransformer(width=text_width, layers=text_layers, heads=text_heads,
                                output_dim=embed_dim, context_length=context_length,
                                vocab_size=vocab_size, quick_gelu_act=quick_gelu_act, **common)
    self.logit_scale = nnx.Param(jnp.asarray(math.log(1 / 0.07), jnp.float32))

  def encode_image(self, images):
    """NHWC float images normalised with CLIP's MEAN/STD -> [B, embed_dim] (not L2-normalised)."""
    return self.visual(images)

  def encode_text(self, tokens):
    """int32 [B, L] token ids -> [B, embed_dim] (not L2-normalised)."""
    return self.text(tokens)

  def __call__(self, images, tokens):
    """Image-to-text logits [B_images, B_texts]: exp(logit_scale) times cosine similarity."""
    i = self.encode_image(images)
    t = self.encode_text(tokens)
    i = i / jnp.linalg.norm(i, axis=-1, keepdims=True)
    t = t / jnp.linalg.norm(t, axis=-1, keepdims=True)
    return jnp.exp(self.logit_scale[...]) * i @ t.T


# --- towers of the video models (TMVM, STVGFormer) ------------------------------------------------
class FrameTokens(nnx.Module):
  """CLIP's ViT on each frame as CLIP4Clip uses it (Luo et al. 2022, ArrowLuo/CLIP4Clip
  `modules/module_clip.py`, `encode_image(..., return_hidden=True)`): every token after ln_post
  times `proj`, `tokens(images) -> [N, 1 + P, output_dim]`, class token first, so the class token's
  feature is CLIP's `encode_image`."""

  def __init__(self, *, output_dim=512, rngs: nnx.Rngs, **vit):
    self.visual = VisionTransformer(output_dim=output_dim, rngs=rngs, **vit)
    self.num_features = output_dim

  def tokens(self, images):
    x = self.visual.tokens(images)
    return x @ self.visual.proj[...].astype(x.dtype)


class TextTokens(TextTransformer):
  """CLIP's text tower as a video model's text encoder: `(ids, mask) -> [B, L, output_dim]`, every
  state after ln_final times `text_projection` (the attention is causal, so the padding after
  end-of-text never reaches the states before it and `mask` is not needed); `pooled` picks the
  end-of-text state, so a sentence's feature is CLIP's `encode_text` (CLIP4Clip's)."""

  def __init__(self, *, output_dim=512, rngs: nnx.Rngs, **kw):
    super().__init__(output_dim=output_dim, rngs=rngs, **kw)
    self.num_features = output_dim

  def __call__(self, ids, mask):
    return self.project(self.hidden_states(ids))

  def pooled(self, states, ids, mask):
    return end_of_text(states, ids)


register_variants(FrameTokens, {"clip_vit_b32_visual": dict(image_size=224, patch_size=32)})
register_variants(TextTokens, {"clip_vit_b32_text": {}})


VARIANTS = {
    "clip_rn50": dict(embed_dim=1024, vision_layers=(3, 4, 6, 3), vision_width=64),
    "clip_vit_b32": dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=32),
    "clip_vit_b16": dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=16),
    "clip_vit_l14": dict(embed_dim=768, vision_layers=24, vision_width=1024, vision_patch_size=14,
                         text_width=768, text_heads=12),
    # Tiny towers for tests and the embedded demos (same code paths).
    "clip_tiny_rn": dict(embed_dim=16, image_size=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                         vision_head_width=32, text_width=32, text_heads=2, text_layers=2),
    "clip_tiny_vit": dict(embed_dim=16, image_size=32, vision_layers=2, vision_width=32,
                          vision_patch_size=8, vision_head_width=16, text_width=32, text_heads=2,
                          text_layers=2),
}


def _register(name, preset):
  def build(*, rngs: nnx.Rngs, **kw):
    return CLIP(**{**preset, **kw}, rngs=rngs)
  build.__doc__ = f"{name}: CLIP({', '.join(f'{k}={v}' for k, v in preset.items())})."
  models.register(name, build)


for _name, _preset in VARIANTS.items():
  _register(_name, _preset)


# --- open_clip / OpenAI state dicts ---------------------------------------------------------------
@convert.register("open_clip")
class OpenCLIP(convert.TorchStateDict):
  """open_clip `CLIP` and OpenAI CLIP state dicts (the OpenAI release is a TorchScript archive
  with the same keys; `convert.load_state_dict` reads both). The text tower's keys sit at the top
  level there (`token_embedding.weight`, `transformer.resblocks.*`, `ln_final`, `text_projection`,
  `positional_embedding`), the image tower's under `visual.`; attention is PyTorch's
  `in_proj_weight` (q | k | v rows) and `out_proj`, the MLP `c_fc` / `c_proj`."""
  ignore = re.compile(r"(num_batches_tracked|attn_mask|^input_resolution|^context_length"
                      r"|^vocab_size)$")
  _RENAMES = ((re.compile(r"^clip/"), ""),  # a CLIP held as `clip` (PVP) reads the same keys
              (re.compile(r"^vision/"), ""),  # video models' FrameTokens (`vision/visual/...`)
              (re.compile(r"^text/"), ""),
              (re.compile(r"^token_embedding/embedding$"), "token_embedding/kernel"),
              (re.compile(r"/attn/qkv/kernel$"), "/attn/in_proj_weight"),
              (re.compile(r"/attn/qkv/bias$"), "/attn/in_proj_bias"),
              (re.compile(r"/attn/proj/"), "/attn/out_proj/"),
              (re.compile(r"/mlp/fc1/"), "/mlp/c_fc/"),
              (re.compile(r"/mlp/fc2/"), "/mlp/c_proj/"))

  def keys(self, path):
    for pat, rep in self._RENAMES:
      path = pat.sub(rep, path)
    return (convert.torch_key(path),)

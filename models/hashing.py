"""Deep-hashing networks: ADSH, ExchNet, SEMICON, DMIH and MCH (see /work/shared/papers/hashing.md).

Every model returns a dict; `code` is the relaxed code u = tanh(.) in [-1, 1]^c used for training
and, through sign(.), as the query code. A backbone is chosen by name:
- "resnet18" / "resnet34" / "resnet50": the ResNet of `models.resnet`, split as the papers do into a
  trunk (stem + layer1..3, the "mid-backbone" feature map) and layer4-like stages that the methods
  copy into their branches (parameter paths of the trunk match torchvision's, so ImageNet weights load).
- "tiny": two 3x3 convs as trunk and one 3x3 conv block per stage, for the embedded demo and tests.

Models:
- ADSH (Jiang & Li 2018): backbone -> GAP -> Linear(c) -> tanh.
- ExchNet (Cui et al. 2020): attention branch -> M part maps A^j; local maps E * A^j through a shared
  local stage -> f^j; a global stage -> f_g; head Linear(D (M+1) -> c) + tanh. `parts` and `head` are
  separate so the task can exchange f^j with class anchors between them.
- SEMICON (Shen et al. 2022): SEM suppression-enhancing attention (3 maps), ICON channel transformer
  after the stages, global branch -> c/2 bits, local branches -> the rest.
- DMIH (1905.10980): one branch (own stage + GAP + Linear) per code block, codes concatenated.
- MCH (2008.01503): R region codes per image (the whole map and a 2x2 grid) through a shared hash
  layer, plus a policy network giving a keep-logit per region code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import resnet as resnet_lib
from models._vision_layers import batch_norm, conv, linear


# --- backbones ------------------------------------------------------------------------------------
class _TinyTrunk(nnx.Module):
  """conv3x3(w)-BN-ReLU-conv3x3(2w, /2)-BN-ReLU."""

  def __init__(self, in_channels: int, width: int, *, rngs: nnx.Rngs):
    self.conv1 = conv(in_channels, width, 3, 1, use_bias=False, rngs=rngs)
    self.bn1 = batch_norm(width, rngs=rngs)
    self.conv2 = conv(width, 2 * width, 3, 2, use_bias=False, rngs=rngs)
    self.bn2 = batch_norm(2 * width, rngs=rngs)
    self.channels = 2 * width

  def __call__(self, x):
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    return jax.nn.relu(self.bn2(self.conv2(x)))


class _TinyStage(nnx.Module):
  """The tiny backbone's "layer4": conv3x3(cout, stride)-BN-ReLU."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv = conv(cin, cout, 3, stride, use_bias=False, rngs=rngs)
    self.bn = batch_norm(cout, rngs=rngs)
    self.channels = cout

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


class _ResNetTrunk(nnx.Module):
  """ResNet stem + layer1..layer3 (the feature map the papers attach their branches to)."""

  def __init__(self, name: str, in_channels: int, *, rngs: nnx.Rngs):
    block, depths = resnet_lib.VARIANTS[name]
    net = resnet_lib.ResNet(block, depths[:3] + (0,), in_channels=in_channels, num_classes=None,
                            rngs=rngs)
    self.conv1, self.bn1 = net.conv1, net.bn1
    self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
    self.channels = net.num_features

  def __call__(self, x):
    x = resnet_lib.max_pool_3x3_s2(jax.nn.relu(self.bn1(self.conv1(x))))
    for layer in (self.layer1, self.layer2, self.layer3):
      for blk in layer:
        x = blk(x)
    return x


class _ResNetStage(nnx.Module):
  """A layer4-like stage of `n` ResNet blocks with `planes` planes."""

  def __init__(self, block: str, n: int, cin: int, planes: int, stride: int, *, rngs: nnx.Rngs):
    cls = {"basic": resnet_lib.BasicBlock, "bottleneck": resnet_lib.Bottleneck}[block]
    blocks = []
    for j in range(n):
      blocks.append(cls(cin, planes, stride if j == 0 else 1, dtype=jnp.float32, rngs=rngs))
      cin = planes * cls.expansion
    self.blocks = nnx.List(blocks)
    self.channels = cin

  def __call__(self, x):
    for blk in self.blocks:
      x = blk(x)
    return x


class Backbone:
  """Factory of a trunk and of layer4-like stages for one backbone name."""

  def __init__(self, name: str, in_channels: int, width: int):
    self.name, self.in_channels, self.width = name, in_channels, width
    if name != "tiny" and name not in resnet_lib.VARIANTS:
      raise ValueError(f"backbone must be 'tiny' or one of {sorted(resnet_lib.VARIANTS)}, "
                       f"not {name!r}.")

  def trunk(self, rngs):
    if self.name == "tiny":
      return _TinyTrunk(self.in_channels, self.width, rngs=rngs)
    return _ResNetTrunk(self.name, self.in_channels, rngs=rngs)

  def stage(self, cin: int, stride: int, rngs, shrink: int = 1):
    """layer4 (planes / `shrink`)."""
    if self.name == "tiny":
      return _TinyStage(cin, 4 * self.width // shrink, stride, rngs=rngs)
    block, depths = resnet_lib.VARIANTS[self.name]
    return _ResNetStage(block, depths[3], cin, 512 // shrink, stride, rngs=rngs)


def _gap(x):
  return jnp.mean(x, axis=(1, 2))


# --- ADSH -----------------------------------------------------------------------------------------
class ADSHNet(nnx.Module):
  """ADSH query network F: backbone -> GAP -> Linear(c) -> tanh (official PyTorch: ResNet-50)."""

  def __init__(self, *, bits: int, backbone: str = "resnet50", in_channels: int = 3,
               width: int = 16, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.trunk = bb.trunk(rngs)
    self.layer4 = bb.stage(self.trunk.channels, 2, rngs)
    self.hash = linear(self.layer4.channels, bits, rngs=rngs)

  def __call__(self, x):
    return {"code": jnp.tanh(self.hash(_gap(self.layer4(self.trunk(x)))))}


# --- ExchNet --------------------------------------------------------------------------------------
class ExchNet(nnx.Module):
  """ExchNet (ECCV 2020), as the DSH_Analysis reimplementation: attention branch (layer4-like stage
  with channels / 4, stride 1) -> 1x1 conv to M maps -> BN + ReLU; local maps `E * A^j` through a
  shared local stage, global map through its own stage; head Linear(D (M+1) -> c) + tanh."""

  def __init__(self, *, bits: int, num_parts: int = 4, backbone: str = "resnet50",
               in_channels: int = 3, width: int = 16, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.num_parts = num_parts
    self.trunk = bb.trunk(rngs)
    c = self.trunk.channels
    self.attention_stage = bb.stage(c, 1, rngs, shrink=4)
    self.attention_conv = conv(self.attention_stage.channels, num_parts, 1, use_bias=False,
                               rngs=rngs)
    self.attention_bn = batch_norm(num_parts, rngs=rngs)
    self.local_stage = bb.stage(c, 2, rngs)
    self.global_stage = bb.stage(c, 2, rngs)
    self.feature_dim = self.local_stage.channels
    self.hash = linear(self.feature_dim * (num_parts + 1), bits, rngs=rngs)

  def parts(self, x):
    """{'attention' [B,H,W,M], 'part_maps' [B,M,h,w,D], 'part_features' [B,M,D], 'global' [B,D]}."""
    e = self.trunk(x)
    a = jax.nn.relu(self.attention_bn(self.attention_conv(self.attention_stage(e))))
    b, h, w, c = e.shape
    local_in = (e[:, None] * jnp.moveaxis(a, -1, 1)[..., None]).reshape(-1, h, w, c)
    maps = self.local_stage(local_in)
    maps = maps.reshape(b, self.num_parts, *maps.shape[1:])
    return {"attention": a, "part_maps": maps, "part_features": jnp.mean(maps, axis=(2, 3)),
            "global": _gap(self.global_stage(e))}

  def head(self, part_features, global_feature):
    flat = jnp.concatenate([part_features.reshape(part_features.shape[0], -1), global_feature], -1)
    return jnp.tanh(self.hash(flat))

  def __call__(self, x):
    p = self.parts(x)
    return {"code": self.head(p["part_features"], p["global"]), "part_features": p["part_features"]}


# --- SEMICON --------------------------------------------------------------------------------------
def sem_mask(fea: jax.Array, alpha: float) -> jax.Array:
  """SEMICON suppression mask (official code): a = softmax_HW(fea) per example and channel,
  mask = clamp((a - mean(a)) / std(a)^alpha + 1, 0, 2) with mean and unbiased std over the whole
  batch tensor; no gradient. fea: [B, H, W, 1] -> [B, H, W, 1]."""
  b, h, w, ch = fea.shape
  a = jax.nn.softmax(fea.reshape(b, h * w, ch), axis=1).reshape(fea.shape)
  a = jax.lax.stop_gradient(a)
  std = jnp.std(a, ddof=1)
  return jax.lax.stop_gradient(jnp.clip((a - jnp.mean(a)) / std ** alpha + 1.0, 0.0, 2.0))


class SEM(nnx.Module):
  """Suppression-enhancing mask attention: a 1x1 conv-BN-ReLU reduction to `channels` maps (the
  official code uses a stride-1 layer4-like trunk for this reduction; simplified here), then `num_maps`
  rounds of `fea_t = relu(BN(conv1x1(x)))`; after each round the salient region found is
  suppressed, `x <- x * (2 - mask_t)`, so the next map looks elsewhere. Returns [B, H, W, num_maps]
  attention maps fea_t."""

  def __init__(self, cin: int, channels: int, num_maps: int, alpha: float, *, rngs: nnx.Rngs):
    self.reduce = conv(cin, channels, 1, use_bias=False, rngs=rngs)
    self.reduce_bn = batch_norm(channels, rngs=rngs)
    self.convs = nnx.List([conv(channels, 1, 1, use_bias=False, rngs=rngs)
                           for _ in range(num_maps)])
    self.bns = nnx.List([batch_norm(1, rngs=rngs) for _ in range(num_maps)])
    self.alpha = alpha

  def __call__(self, x):
    x = jax.nn.relu(self.reduce_bn(self.reduce(x)))
    maps = []
    for conv_t, bn_t in zip(self.convs, self.bns):
      fea = jax.nn.relu(bn_t(conv_t(x)))
      maps.append(fea)
      x = x * (2.0 - sem_mask(fea, self.alpha))
    return jnp.concatenate(maps, -1)


def _signed_sqrt(a):
  return jnp.sign(a) * jnp.sqrt(jnp.abs(a) + 1e-5)


def channel_attention(q, k, v):
  """Attention among the channels of one group: q, k, v [B, N, G, d] (N positions, G groups of d
  channels) -> [B, N, G, d]; logits q^T k over positions, scaled d^-1/2, signed square root, softmax
  over the key channel."""
  d = q.shape[-1]
  logits = jnp.einsum("bngi,bngj->bgij", q, k) * d ** -0.5
  attn = jax.nn.softmax(_signed_sqrt(logits), -1)
  return jnp.einsum("bgij,bngj->bngi", attn, v)


class ICON(nnx.Module):
  """SEMICON's ICON channel transformer on a feature map [B, H, W, C], C = h * d (d = 64, or
  C // 16 for narrow maps, h = C // d). Stage 1: grouped 1x1 qkv (h groups), d x d attention inside
  each group, residual, permute channels (h, d) -> (d, h), BN, ReLU. Stage 2: grouped qkv (d groups),
  h x h attention, permute back, added to the input."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.h = max(channels // 64, 16)
    if channels % self.h:
      raise ValueError(f"ICON needs channels divisible by {self.h}, got {channels}.")
    self.d = channels // self.h
    self.qkv1 = conv(channels, 3 * channels, 1, groups=self.h, use_bias=False, rngs=rngs)
    self.bn = batch_norm(channels, rngs=rngs)
    self.qkv2 = conv(channels, 3 * channels, 1, groups=self.d, use_bias=False, rngs=rngs)

  def _attend(self, x, qkv, groups, size):
    b, hh, ww, c = x.shape
    y = qkv(x).reshape(b, hh * ww, groups, 3, size)
    return channel_attention(y[..., 0, :], y[..., 1, :], y[..., 2, :]).reshape(x.shape)

  def __call__(self, x):
    b, hh, ww, c = x.shape
    y = x + self._attend(x, self.qkv1, self.h, self.d)
    y = jnp.swapaxes(y.reshape(b, hh, ww, self.h, self.d), -1, -2).reshape(x.shape)
    y = jax.nn.relu(self.bn(y))
    y = y + self._attend(y, self.qkv2, self.d, self.h)
    y = jnp.swapaxes(y.reshape(b, hh, ww, self.d, self.h), -1, -2).reshape(x.shape)
    return x + y


class SEMICON(nnx.Module):
  """SEMICON (ECCV 2022): global branch (own stage + ICON -> GAP -> W_G, c/2 bits) and local
  branches (trunk map x each SEM map -> shared stage + ICON -> GAP -> W_Lj); codes concatenated, tanh.
  Each of the M local branches gets c // (2M) bits and the global one the remainder, so the code has
  exactly c bits (for M = 3 and 12/24/48 bits: c/2 global and c/6 per local branch, as official)."""

  def __init__(self, *, bits: int, num_maps: int = 3, attention_channels: int = 64,
               alpha: float = 0.15, backbone: str = "resnet50", in_channels: int = 3,
               width: int = 16, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.trunk = bb.trunk(rngs)
    c = self.trunk.channels
    self.sem = SEM(c, attention_channels, num_maps, alpha, rngs=rngs)
    self.global_stage = bb.stage(c, 2, rngs)
    self.local_stage = bb.stage(c, 2, rngs)
    d = self.global_stage.channels
    self.global_icon = ICON(d, rngs=rngs)
    self.local_icon = ICON(d, rngs=rngs)
    local_bits = bits // (2 * num_maps)
    self.num_maps = num_maps
    self.global_hash = linear(d, bits - num_maps * local_bits, use_bias=False, rngs=rngs)
    self.local_hash = nnx.List([linear(d, local_bits, use_bias=False, rngs=rngs)
                                for _ in range(num_maps)])

  def __call__(self, x):
    e = self.trunk(x)
    att = self.sem(e)
    g = self.global_hash(_gap(self.global_icon(self.global_stage(e))))
    b, h, w, c = e.shape
    local_in = (e[:, None] * jnp.moveaxis(att, -1, 1)[..., None]).reshape(-1, h, w, c)
    f = _gap(self.local_icon(self.local_stage(local_in))).reshape(b, self.num_maps, -1)
    locals_ = [w_j(f[:, j]) for j, w_j in enumerate(self.local_hash)]
    return {"code": jnp.tanh(jnp.concatenate([g] + locals_, -1)), "attention": att}


# --- DMIH -----------------------------------------------------------------------------------------
class DMIH(nnx.Module):
  """DMIH: one branch per code block (own layer4-like stage + GAP + Linear + tanh) on a shared trunk;
  block sizes follow multi-index hashing's split (the first c - m(b-1) blocks have b = ceil(c/m)
  bits, the rest b-1), so block k of the code is the k-th multi-index table's substring."""

  def __init__(self, *, bits: int, num_blocks: int = 4, backbone: str = "resnet50",
               in_channels: int = 3, width: int = 16, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.trunk = bb.trunk(rngs)
    b = -(-bits // num_blocks)
    sizes = [b if k < bits - num_blocks * (b - 1) else b - 1 for k in range(num_blocks)]
    self.branches = nnx.List([bb.stage(self.trunk.channels, 2, rngs, shrink=num_blocks)
                              for _ in sizes])
    self.heads = nnx.List([linear(br.channels, s, rngs=rngs)
                           for br, s in zip(self.branches, sizes)])

  def __call__(self, x):
    e = self.trunk(x)
    codes = [head(_gap(br(e))) for br, head in zip(self.branches, self.heads)]
    return {"code": jnp.tanh(jnp.concatenate(codes, -1))}


# --- MCH ------------------------------------------------------------------------------------------
def region_features(fmap: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 5, C]: the whole map and its 2x2 grid cells, average-pooled."""
  h2, w2 = fmap.shape[1] // 2, fmap.shape[2] // 2
  cells = [fmap[:, :h2, :w2], fmap[:, :h2, w2:], fmap[:, h2:, :w2], fmap[:, h2:, w2:]]
  return jnp.stack([_gap(fmap)] + [_gap(c) for c in cells], 1)


class MCH(nnx.Module):
  """MCH: backbone -> R = 5 region features (whole image + 2x2 grid) -> shared Linear(c) + tanh,
  one code per region; the policy network (on stop-gradient region features: Linear-ReLU-Linear)
  gives a keep-logit per region code. Region 0 (the whole image) is the item's main code."""

  def __init__(self, *, bits: int, backbone: str = "resnet50", in_channels: int = 3,
               width: int = 16, policy_hidden: int = 64, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.trunk = bb.trunk(rngs)
    self.layer4 = bb.stage(self.trunk.channels, 2, rngs)
    d = self.layer4.channels
    self.hash = linear(d, bits, rngs=rngs)
    self.policy1 = linear(d, policy_hidden, rngs=rngs)
    self.policy2 = linear(policy_hidden, 1, rngs=rngs)

  def __call__(self, x):
    regions = region_features(self.layer4(self.trunk(x)))
    codes = jnp.tanh(self.hash(regions))
    logits = self.policy2(jax.nn.relu(self.policy1(jax.lax.stop_gradient(regions))))[..., 0]
    return {"code": codes[:, 0], "region_codes": codes, "policy_logits": logits}


models.register("adsh_net", ADSHNet)
models.register("exchnet", ExchNet)
models.register("semicon", SEMICON)
models.register("dmih", DMIH)
models.register("mch", MCH)

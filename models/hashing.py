"""Deep-hashing networks: ADSH, ExchNet, SEMICON, DMIH and MCH.

Every model returns a dict; `code` is the relaxed code u = tanh(.) in [-1, 1]^c used for training
and, through sign(.), as the query code. A backbone is chosen by name:
- "resnet18" / "resnet34" / "resnet50": the ResNet of `models.resnet`, split as the papers do into a
  trunk (stem + layer1..3, the "mid-backbone" feature map) and layer4-like stages that the methods
  copy into their branches (parameter paths of the trunk match torchvision's, so ImageNet weights load).
- "tiny": two 3x3 convs as trunk and one 3x3 conv block per stage, for the embedded demo and tests.

Models:
- ADSH (Jiang & Li, AAAI 2018, "Asymmetric Deep Supervised Hashing"; official
  jiangqy/ADSH-AAAI2018 `ADSH_pytorch/utils/cnn_model.py`): backbone -> GAP -> Linear(c) -> tanh.
- ExchNet (Cui et al., ECCV 2020, "ExchNet: A Unified Hashing Network for Large-Scale Fine-Grained
  Image Retrieval", Sec. 3.1-3.3; no official code, built as the reimplementation by SEMICON's
  authors, aassxun/DSH_Analysis `models/exchnet.py`): attention branch -> M part maps A^j; local maps
  E * A^j through a shared local stage -> f^j; a global stage -> f_g; head Linear(D (M+1) -> c) +
  tanh. `parts` and `head` are separate so the task can exchange f^j with class anchors (Eq. 8).
- SEMICON (Shen et al., ECCV 2022, "SEMICON: A Learning-to-hash Solution for Large-scale
  Fine-grained Image Retrieval"; official aassxun/SEMICON `models/SEMICON.py`, reproduced to the
  parameter and checked against its forward): SEM suppression-enhancing attention (3 maps), ICON
  channel transformers inside the refine stages, global branch -> c/2 bits, local branches -> the
  rest; `semicon_from_torch` imports official checkpoints.
- DMIH (arXiv 1905.10980, deep multi-index hashing for person re-identification): one branch (own
  stage + GAP + Linear) per code block, codes concatenated.
- MCH (Li, Jiang & Li, arXiv 2008.01503, "Multiple Code Hashing for Efficient Image Retrieval"):
  R region codes per image (the whole map and a 2x2 grid) through a shared hash layer, plus a policy
  network giving a keep-logit per region code.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models import convert
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


# torchvision's conv init (kaiming_normal, fan_out), which the official SEMICON init loops apply.
_KAIMING_FAN_OUT = resnet_lib._KAIMING_FAN_OUT


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
  """SEMICON suppression mask (official `SEM._mask`): a = softmax_HW(fea) per example and channel,
  mask = clamp((a - mean(a)) / std(a)^alpha + 1, 0, 2) with mean and unbiased std over the whole
  batch tensor; no gradient. fea: [B, H, W, 1] -> [B, H, W, 1]."""
  b, h, w, ch = fea.shape
  a = jax.nn.softmax(fea.reshape(b, h * w, ch), axis=1).reshape(fea.shape)
  a = jax.lax.stop_gradient(a)
  std = jnp.std(a, ddof=1)
  return jax.lax.stop_gradient(jnp.clip((a - jnp.mean(a)) / std ** alpha + 1.0, 0.0, 2.0))


class SEM(nnx.Module):
  """SEMICON's suppression-enhancing mask attention (official `SEM`).

  Trunk (a stride-1 "layer4" that narrows the map by 4 per round): Bottleneck(cin -> cin), then
  `rounds` times [conv1x1 + BN (no ReLU) to width / 4, Bottleneck(width / 4)]; the official trunk is
  two rounds, 1024 -> 64 channels. Then `num_maps` rounds of `fea_t = relu(BN(conv1x1(x)))` (one
  channel each); after each but the last, the salient region found is suppressed,
  `x <- x * (2 - mask_t)` (`sem_mask`), so the next map looks elsewhere. Returns the maps fea_t,
  [B, H, W, num_maps]. Convolutions start as kaiming_normal(fan_out), as the official init loop."""

  def __init__(self, cin: int, rounds: int, num_maps: int, alpha: float, *, rngs: nnx.Rngs):
    if cin % 4 ** (rounds + 1):
      raise ValueError(f"SEM narrows by 4 per round and its blocks by 4 again: {rounds} rounds "
                       f"need channels divisible by {4 ** (rounds + 1)}, got {cin}.")
    kw = dict(dtype=jnp.float32, rngs=rngs)
    width = cin
    blocks, reduce_convs, reduce_bns = [resnet_lib.Bottleneck(cin, cin // 4, 1, **kw)], [], []
    for _ in range(rounds):
      reduce_convs.append(conv(width, width // 4, 1, use_bias=False, kernel_init=_KAIMING_FAN_OUT,
                               rngs=rngs))
      reduce_bns.append(batch_norm(width // 4, rngs=rngs))
      width //= 4
      blocks.append(resnet_lib.Bottleneck(width, width // 4, 1, **kw))
    self.blocks = nnx.List(blocks)
    self.reduce_convs, self.reduce_bns = nnx.List(reduce_convs), nnx.List(reduce_bns)
    self.convs = nnx.List([conv(width, 1, 1, use_bias=False,
                                kernel_init=_KAIMING_FAN_OUT, rngs=rngs)
                           for _ in range(num_maps)])
    self.bns = nnx.List([batch_norm(1, rngs=rngs) for _ in range(num_maps)])
    self.alpha = alpha

  def __call__(self, x):
    x = self.blocks[0](x)
    for blk, red, bn in zip(self.blocks[1:], self.reduce_convs, self.reduce_bns):
      x = blk(bn(red(x)))
    maps = []
    for t, (conv_t, bn_t) in enumerate(zip(self.convs, self.bns)):
      fea = jax.nn.relu(bn_t(conv_t(x)))
      maps.append(fea)
      if t + 1 < len(self.convs):
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
  """SEMICON's ICON channel transformer (official `ChannelTransformer`) on a
  feature map [B, H, W, C], h = max(C / 64, 16) heads of d = C / h channels.

  Stage 1: `qkv` = grouped 1x1 conv with bias (h groups) to 3C channels, read as (3, h, d): head g
  takes q, k and v from conv groups floor(g/3), floor((h+g)/3), floor((2h+g)/3), exactly as the
  official reshape does; d x d attention among the channels of each head (`channel_attention`);
  plus the input; channels permuted (h, d) -> (d, h); y = relu(BN(.)).
  Stage 2: `qkv2` (d groups, read as (3, d, h)), h x h attention, its output permuted back to
  (h, d), plus y. The official in-place ReLU makes the residual y the post-ReLU map, still in
  (d, h) order, and the block has no outer residual: with zero qkv weights and biases it returns
  relu(BN(permuted input))."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.h = max(channels // 64, 16)
    if channels % self.h:
      raise ValueError(f"ICON needs channels divisible by {self.h}, got {channels}.")
    self.d = channels // self.h
    kw = dict(kernel_init=_KAIMING_FAN_OUT, rngs=rngs)
    self.qkv = conv(channels, 3 * channels, 1, groups=self.h, **kw)
    self.norm = batch_norm(channels, rngs=rngs)
    self.qkv2 = conv(channels, 3 * channels, 1, groups=self.d, **kw)

  def __call__(self, x):
    b, hh, ww, c = x.shape
    n, h, d = hh * ww, self.h, self.d
    qkv = self.qkv(x).reshape(b, n, 3, h, d)
    a = channel_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])  # [b, n, h, d]
    z = (a + x.reshape(b, n, h, d)).swapaxes(-1, -2).reshape(x.shape)  # channels (d, h)
    y = jax.nn.relu(self.norm(z))
    qkv = self.qkv2(y).reshape(b, n, 3, d, h)
    a = channel_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])  # [b, n, d, h]
    return a.swapaxes(-1, -2).reshape(x.shape) + y


class RefineStage(nnx.Module):
  """A SEMICON refine branch (official `ResNet_Refine`): the layer4-like stage with an ICON after
  each of its blocks but the first (ResNet-50: after blocks 2 and 3). A one-block stage (the tiny
  backbone) gets one ICON after its block."""

  def __init__(self, stage, *, rngs: nnx.Rngs):
    self.blocks = stage.blocks if isinstance(stage, _ResNetStage) else nnx.List([stage])
    self.channels = stage.channels
    self.icons = nnx.List([ICON(stage.channels, rngs=rngs)
                           for _ in range(max(len(self.blocks) - 1, 1))])
    self.first = len(self.blocks) - len(self.icons)

  def __call__(self, x):
    for j, blk in enumerate(self.blocks):
      x = blk(x)
      if j >= self.first:
        x = self.icons[j - self.first](x)
    return x


class SEMICON(nnx.Module):
  """SEMICON (Shen et al., ECCV 2022, "SEMICON: A Learning-to-hash Solution for Large-scale
  Fine-grained Image Retrieval"; official aassxun/SEMICON `models/SEMICON.py`): trunk (ResNet-50
  conv1..layer3) -> SEM maps; global branch (own refine stage -> GAP -> W_G, no bias) and local
  branches (trunk map x each SEM map, one at a time, through a shared refine stage -> GAP -> W_Lj);
  codes concatenated, tanh. Each of the M local branches gets c // (2M) bits and the global one the
  remainder (M = 3: c/2 global and c/6 per local branch, 17 global bits at 32, as official).
  `num_maps`, `attention_rounds` and `alpha` are the official att_size 3, the SEM trunk's two
  narrowing rounds (1024 -> 64 channels) and 0.15.
  Official checkpoints load through `semicon_from_torch`."""

  def __init__(self, *, bits: int, num_maps: int = 3, attention_rounds: int = 2,
               alpha: float = 0.15, backbone: str = "resnet50", in_channels: int = 3,
               width: int = 16, rngs: nnx.Rngs):
    bb = Backbone(backbone, in_channels, width)
    self.trunk = bb.trunk(rngs)
    c = self.trunk.channels
    self.global_stage = RefineStage(bb.stage(c, 2, rngs), rngs=rngs)
    self.local_stage = RefineStage(bb.stage(c, 2, rngs), rngs=rngs)
    self.sem = SEM(c, attention_rounds, num_maps, alpha, rngs=rngs)
    d = self.global_stage.channels
    local_bits = bits // (2 * num_maps)
    self.num_maps = num_maps
    self.global_hash = linear(d, bits - num_maps * local_bits, use_bias=False, rngs=rngs)
    self.local_hash = nnx.List([linear(d, local_bits, use_bias=False, rngs=rngs)
                                for _ in range(num_maps)])

  def __call__(self, x):
    e = self.trunk(x)
    g = _gap(self.global_stage(e))
    att = self.sem(e)
    # One call per map, as the official forward: in training mode each has its own BN statistics.
    f = jnp.stack([_gap(self.local_stage(e * att[..., j:j + 1])) for j in range(self.num_maps)], 1)
    codes = [self.global_hash(g)] + [w_j(f[:, j]) for j, w_j in enumerate(self.local_hash)]
    return {"code": jnp.tanh(jnp.concatenate(codes, -1)), "attention": att,
            "global_feature": g, "local_features": f}


def _semicon_key(key: str) -> str | None:
  """Official SEMICON state-dict key -> our PyTorch-style key (`models.convert.torch_key`)."""
  if key.startswith("backbone."):
    return "trunk." + key.removeprefix("backbone.")
  if key == "W_G":
    return "global_hash.weight"
  if m := re.fullmatch(r"W_L(\d+)", key):
    return f"local_hash.{int(m[1]) - 1}.weight"
  if m := re.fullmatch(r"attention\.layer4\.(\d+)\.(\d)\.(.+)", key):
    # layer4.{2k+1} = Sequential(conv1x1, BN): the k-th narrowing
    return f"sem.{('reduce_convs', 'reduce_bns')[int(m[2])]}.{int(m[1]) // 2}.{m[3]}"
  if m := re.fullmatch(r"attention\.layer4\.(\d+)\.(.+)", key):  # layer4.{2k}: k-th Bottleneck
    return f"sem.blocks.{int(m[1]) // 2}.{m[2]}"
  if m := re.fullmatch(r"attention\.feature(\d+)\.(\d)\.(.+)", key):  # (conv1x1, BN, ReLU)
    return f"sem.{('convs', 'bns')[int(m[2])]}.{int(m[1]) - 1}.{m[3]}"
  if m := re.fullmatch(r"refine_(global|local)\.layer4\.(\d+)\.(.+)", key):
    i = int(m[2])  # layer4 = [block 0, block 1, ICON, block 2, ICON, ...]
    part = f"blocks.{i}" if i < 2 else f"blocks.{i // 2 + 1}" if i % 2 else f"icons.{i // 2 - 1}"
    return f"{m[1]}_stage.{part}.{m[3]}"
  return None


def semicon_from_torch(state_dict: dict) -> tuple[dict, dict]:
  """An official SEMICON state dict (aassxun/SEMICON `models/SEMICON.py`, e.g. the `model.pth` its
  training script saves) -> (state dict in our names, the entries not used).

  Pure renaming: the first dict is keyed as `models.convert.torch_key` names our `SEMICON`
  (ResNet-50 backbone) and keeps PyTorch layouts, so `models.convert.load_into(model, params)` loads
  it and checks every shape. `num_batches_tracked` buffers (and any unknown key) go to the second
  dict."""
  params, rest = {}, {}
  for key, value in state_dict.items():
    ours = None if key.endswith("num_batches_tracked") else _semicon_key(key)
    (params if ours else rest)[ours or key] = value
  return params, rest


@convert.register("semicon")
class SemiconCheckpoint(convert.TorchStateDict):
  """`init_from` converter for official SEMICON checkpoints: their keys renamed by
  `semicon_from_torch`; keys it does not know stay as they are (and are reported as unexpected)."""

  def rename_file(self, theirs):
    ours, rest = semicon_from_torch(dict(theirs))
    return {**ours, **{k: v for k, v in rest.items() if not k.endswith("num_batches_tracked")}}


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

"""DSA: an ensemble of prediction heads made diverse by structurally different adapters (Qi et al.,
"Diverse Structural Adapters", code Qi2019KB/DSA: `models/utils/multiple.py` `MultiStream`,
`models/utils/adaptor.py` `MultiAdaptor`, `models/classification/wideresnet_acbe.py`,
`models/utils/initStrategy.py`).

On a backbone's feature map F [B, H, W, C] (`backbone.features`):
  X = pre(F), a 1x1 conv with bias C -> C + p(S - 1), p = int(split_factor * C).
  Channels [0, pS) are private (stream s owns [ps, ps + p)); the last C - p are shared.
  For each stream s = 0..S-1 (each starts from the same X):
    1. feature noise, with probability 1/2: X <- u (X - mean X) + mean X + v, then clamp to [0, 1],
       u ~ U(1 - f, 1 + f), v ~ U(-f, f), the mean over the whole tensor, f = `noise_factor`;
    2. the shared channels go through adapter s: five 1x1 convs with bias, widths
       shared -> w1 + 10s -> w2 + 10s -> w3 + 10s -> w4 + 10s -> shared (w = `adapter_widths`,
       512, 1024, 1024, 512 in the code), each followed by activation number s mod 5 of
       (ReLU, LeakyReLU(0.01), PReLU(0.25), RReLU(1/8, 1/3), ELU);
    3. the stream feature is concat(private channels of s, adapted shared channels) (C channels);
    4. logits_s = head_s(mean_hw(LeakyReLU_0.1(BN(feature)))), one BN shared by every stream.
  `model(x)` returns the stacked logits [S, B, num_classes].

Initialisation (initStrategy `ms_adapter_initialize`, `ms_fc_initialize`), by s mod 5: adapters
N(0, 1e-3) with zero bias (0, 1), kaiming-normal(a=sqrt 5) (2) and kaiming-uniform(a=sqrt 5) (3)
with U(+-1/sqrt(fan_in)) bias, N(0, 1) weights and biases (4); heads N(0, 1e-3) with zero bias
(0, 2), U(+-1/sqrt(in)) weight and bias (1), kaiming-normal (3) and kaiming-uniform (4) with uniform
bias. The expansion conv keeps PyTorch's default initialisation.

`train_adapters=False` (default) is what the official code computes: `MultiStream` and
`MultiAdaptor` are plain Python objects, not registered modules, so the expansion conv, the adapters
and PReLU's slope are never optimised (fixed random projections; here `Fixed` variables, not
`nnx.Param`: no gradient, no optimizer state, no EMA, but checkpointed), never switched to eval mode
(the noise and RReLU's random slopes act at test time too). `train_adapters=True` is the paper's
reading: they are trained parameters and, like the noise, deterministic in eval mode
(`noise_at_test` overrides the noise part either way).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models.wide_resnet import WideResNet, batch_norm, leaky_relu

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "rrelu", "elu")
RRELU_RANGE = (1.0 / 8.0, 1.0 / 3.0)


class Fixed(nnx.Variable):
  """A random projection that is never trained (lands in the state's `rest`, so no gradient)."""


def _uniform(bound):
  return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _normal(std, fan_in_gain=None):
  """N(0, std^2), or with `fan_in_gain` the kaiming-normal std gain / sqrt(fan_in)."""
  def init(key, shape):
    s = std if fan_in_gain is None else fan_in_gain / math.sqrt(shape[0])
    return s * jax.random.normal(key, shape, jnp.float32)
  return init


# kaiming_normal_(a=sqrt(5)): std = gain / sqrt(fan_in)
_KAIMING_A5_GAIN = math.sqrt(2.0 / (1.0 + 5.0))


def _init_scheme(kind: int, fan_in: int):
  """(weight init, bias init) of initStrategy's scheme `kind` (0..4, see the module docstring):
  the adapter schemes; heads use `_head_scheme`."""
  bound = 1.0 / math.sqrt(fan_in)
  zeros = lambda key, shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
  return [(_normal(1e-3), zeros), (_normal(1e-3), zeros),
          (_normal(None, _KAIMING_A5_GAIN), _uniform(bound)), (_uniform(bound), _uniform(bound)),
          (_normal(1.0), _normal(1.0))][kind]


def _head_scheme(kind: int, fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  zeros = lambda key, shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
  return [(_normal(1e-3), zeros), (_uniform(bound), _uniform(bound)), (_normal(1e-3), zeros),
          (_normal(None, _KAIMING_A5_GAIN), _uniform(bound)),
          (_uniform(bound), _uniform(bound))][kind]


class Pointwise(nnx.Module):
  """A 1x1 conv with bias (`kernel` [cin, cout], `bias` [cout]) held in variables of type `kind`."""

  def __init__(self, cin, cout, inits, kind, *, rngs: nnx.Rngs):
    w_init, b_init = inits
    self.kernel = kind(w_init(rngs.params(), (cin, cout)))
    self.bias = kind(b_init(rngs.params(), (cout,)))

  def __call__(self, x):
    return x @ self.kernel[...] + self.bias[...]


class StreamActivation(nnx.Module):
  """Activation `name` of ACTIVATIONS; PReLU's slope (init 0.25) is a variable of type `kind`;
  RReLU draws a slope U(1/8, 1/3) per element when stochastic, else uses their mean."""

  def __init__(self, name, kind, stochastic: bool, *, rngs: nnx.Rngs):
    self.name = name
    self.stochastic = stochastic  # official: always; paper reading: only in train mode
    self.deterministic = False   # set by model.eval() / model.train()
    self.slope = kind(jnp.full((), 0.25, jnp.float32)) if name == "prelu" else None
    self.rngs = rngs.noise.fork() if name == "rrelu" else None

  def __call__(self, x):
    if self.name == "relu":
      return jax.nn.relu(x)
    if self.name == "leaky_relu":
      return jax.nn.leaky_relu(x, 0.01)
    if self.name == "prelu":
      return jnp.where(x >= 0, x, self.slope[...] * x)
    if self.name == "elu":
      return jax.nn.elu(x)
    lo, hi = RRELU_RANGE
    if self.stochastic or not self.deterministic:
      a = jax.random.uniform(self.rngs(), x.shape, x.dtype, lo, hi)
    else:
      a = (lo + hi) / 2
    return jnp.where(x >= 0, x, a * x)


class Adapter(nnx.Module):
  """Five 1x1 convs shared -> w1+10s -> ... -> w4+10s -> shared, each followed by the stream's
  activation (a separate instance per layer, as the code's `Conv2`)."""

  def __init__(self, s: int, shared: int, widths, kind, stochastic, *, rngs: nnx.Rngs):
    dims = (shared, *(w + 10 * s for w in widths), shared)
    self.layers = nnx.List([Pointwise(a, b, _init_scheme(s % 5, a), kind, rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])
    self.acts = nnx.List([StreamActivation(ACTIVATIONS[s % 5], kind, stochastic, rngs=rngs)
                          for _ in self.layers])

  def __call__(self, x):
    for layer, act in zip(self.layers, self.acts):
      x = act(layer(x))
    return x


class FeatureNoise(nnx.Module):
  """With probability 1/2: X <- clip(u (X - mean X) + mean X + v, 0, 1), u ~ U(1-f, 1+f),
  v ~ U(-f, f) (`MultiStream._noisy_mean`); identity when f = 0 or when deterministic and not
  `at_test`."""

  def __init__(self, factor: float, at_test: bool, *, rngs: nnx.Rngs):
    self.factor = factor
    self.at_test = at_test
    self.deterministic = False
    self.rngs = rngs.noise.fork()

  def __call__(self, x):
    if self.factor <= 0 or (self.deterministic and not self.at_test):
      return x
    k_apply, k_u, k_v = jax.random.split(self.rngs(), 3)
    f = self.factor
    mu = jnp.mean(x)
    u = jax.random.uniform(k_u, (), x.dtype, 1 - f, 1 + f)
    v = jax.random.uniform(k_v, (), x.dtype, -f, f)
    noisy = jnp.clip(u * (x - mu) + mu + v, 0.0, 1.0)
    return jnp.where(jax.random.uniform(k_apply) <= 0.5, noisy, x)


class MultiHead(nnx.Module):
  """DSA's streams on a feature map [B, H, W, C] -> logits [S, B, num_classes]."""

  def __init__(self, channels: int, num_classes: int, *, stream_num: int = 5,
               split_factor: float = 0.1, adapter_widths=(512, 1024, 1024, 512),
               noise_factor: float = 0.2, train_adapters: bool = False,
               noise_at_test: bool | None = None, bn_momentum: float = 0.999, rngs: nnx.Rngs):
    kind = nnx.Param if train_adapters else Fixed
    stochastic = not train_adapters
    self.stream_num = stream_num
    self.private = int(channels * split_factor)
    self.channels = channels
    expanded = channels + self.private * (stream_num - 1)
    self.shared = expanded - self.private * stream_num
    torch_default = (_uniform(1.0 / math.sqrt(channels)),) * 2
    self.pre = Pointwise(channels, expanded, torch_default, kind, rngs=rngs)
    self.noise = nnx.List([
        FeatureNoise(noise_factor, stochastic if noise_at_test is None else noise_at_test,
                     rngs=rngs) for _ in range(stream_num)])
    self.adapters = nnx.List([Adapter(s, self.shared, tuple(adapter_widths), kind, stochastic,
                                      rngs=rngs) for s in range(stream_num)])
    self.bn = batch_norm(channels, bn_momentum, rngs=rngs)
    heads = []
    for s in range(stream_num):
      w_init, b_init = _head_scheme(s % 5, channels)
      heads.append(nnx.Linear(channels, num_classes, rngs=rngs,
                              kernel_init=lambda k, shape, dtype=None, f=w_init: f(k, shape),
                              bias_init=lambda k, shape, dtype=None, f=b_init: f(k, shape)))
    self.heads = nnx.List(heads)

  def stream_features(self, x):
    """The S stream features [S, B, H, W, C] before the shared BN."""
    x = self.pre(x)
    p, start = self.private, self.private * self.stream_num
    out = []
    for s in range(self.stream_num):
      xs = self.noise[s](x)
      shared = self.adapters[s](xs[..., start:])
      out.append(jnp.concatenate([xs[..., s * p:(s + 1) * p], shared], axis=-1))
    return jnp.stack(out)

  def __call__(self, x):
    feats = self.stream_features(x)
    logits = [self.heads[s](jnp.mean(leaky_relu(self.bn(feats[s])), axis=(1, 2)))
              for s in range(self.stream_num)]
    return jnp.stack(logits)


class DSAWideResNet(nnx.Module):
  """A WRN trunk (`models.wide_resnet`, no final BN or head) followed by `MultiHead`
  (`WideResNet_ACBE` of the official code)."""

  def __init__(self, *, depth: int = 28, widen_factor: int = 2, num_classes: int = 10,
               in_channels: int = 3, bn_momentum: float = 0.999, rngs: nnx.Rngs, **multi_head):
    self.backbone = WideResNet(depth=depth, widen_factor=widen_factor, num_classes=None,
                               in_channels=in_channels, bn_momentum=bn_momentum, rngs=rngs)
    self.multi_head = MultiHead(self.backbone.num_features, num_classes, bn_momentum=bn_momentum,
                                rngs=rngs, **multi_head)

  def __call__(self, x):
    return self.multi_head(self.backbone.features(x))


def _with_noise_stream(build):
  def factory(*, rngs: nnx.Rngs, **kw):
    if "noise" not in rngs:  # the streams the noise and RReLU draw from, separate from dropout
      rngs = nnx.Rngs(params=rngs.params(), noise=rngs.dropout() if "dropout" in rngs else 0)
    return build(rngs=rngs, **kw)
  factory.__doc__ = build.__doc__
  return factory


models.register("dsa_wrn28_2", _with_noise_stream(
    lambda *, rngs, **kw: DSAWideResNet(depth=28, widen_factor=2, rngs=rngs, **kw)))
models.register("dsa_wrn28_8", _with_noise_stream(
    lambda *, rngs, **kw: DSAWideResNet(depth=28, widen_factor=8, rngs=rngs, **kw)))
models.register("dsa_wrn", _with_noise_stream(DSAWideResNet))

"""Low-rank adapters on frozen linear layers: LoRA and kernelized LoRA with competition-based
sparsification (SNELL; Shen et al. 2024, "Expanding Sparse Tuning for Low Memory Usage", NeurIPS,
arXiv 2411.01800; official code github.com/ssfgunner/SNELL, `model/vision_transformer_timm.py`).

A frozen layer y = x W0 + b gets a delta y += DropPath(x dW_s) with dW_s in R^{n_in x n_out}:
- LoRA (Hu et al. 2022): dW = A B, A in R^{n_in x r} kaiming-uniform, B in R^{r x n_out} zero, so
  dW = 0 at init (the official `TuningModule('lora')`: no alpha / r scaling).
- Kernelized LoRA (SNELL Eq. 3-4): A in R^{H x n_in x r/H}, B in R^{H x n_out x r/H} (H = 2),
  dW[i, j] = sum_h c_h k(A[h, i], B[h, j]) with the code's fixed coefficients c = 0.1 (+1, -1, ...)
  (`shared_coeff_fc`, not trained). Kernels: `distance` k = ||a - b||_2 (the official KLoRA/SNELL),
  `mixed` (the code's MixK: dW + alpha softmax(dW / gamma, over outputs) + beta, learnable scalars
  1, 1, 0), and for the kernel ablation `linear` a.b, `sigmoid` tanh(a.b), `rbf` exp(-||a - b||^2).
  Both factors are initialised U(+-1/sqrt(n r/H)) (PyTorch kaiming-uniform, a = sqrt 5, on the 3-D
  tensor), so dW is not zero at init.
- Competition-based sparsification (SNELL Eq. 5, as the official class `SNELL` computes it), for
  sparsity s > 0: thr = quantile(|dW|, s) over the whole matrix (linear interpolation, as
  torch.quantile), M = |dW| where |dW| > thr else 0, computed from a stop-gradient copy, and
  dW_s = dW * M: survivors keep their sign with magnitude squared and d dW_s / d dW = M. With s = 0
  the code uses plain KLoRA (no |dW| factor: s -> 0+ is not s = 0). `sparsify="soft_threshold"`
  uses the factor max(|dW| - thr, 0) instead of M (the paper's soft-threshold reading).
- The merge, the quantile and the matmul run under `jax.checkpoint`, so the n_in x n_out delta is
  recomputed in the backward pass instead of being kept (the code wraps them in torch checkpoint).

Placement in a ViT block (official `AttentionSNELLParallel`, `MlpSNELLParallel`): adapters on q, k,
v, proj, fc1 and fc2, each with its own delta and threshold (our fused `qkv` gets three separate
adapters whose outputs are concatenated, never one quantile over the fused matrix); Dropout(0.1) on
the adapter input (shared by q, k, v; none before proj; drawn separately before fc1 and fc2) and a
per-example DropPath(0.1) on each delta. The frozen weights keep their timm paths, the adapters live
beside them as `attn/adapter_{q,k,v,proj}`, `mlp/adapter_{fc1,fc2}` (train them with
`optimizer.trainable = r"adapter_|^head/|^cls_token$"`, the official trainable set).

    model = models.build("vit_b16", num_classes=200,
                         adapter=dict(kind="kernel", rank=8, sparsity=0.3))
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ml_pipelines.registry import unknown_options
from models._vision_layers import Attention, Mlp, drop_path, gelu

KINDS = ("lora", "kernel")
KERNELS = ("distance", "mixed", "linear", "sigmoid", "rbf")
SPARSIFY = ("code", "soft_threshold")
DEFAULTS = dict(kind="kernel", rank=8, kernel="distance", sparsity=0.0, sparsify="code", heads=2,
                coeff=0.1, dropout=0.1, drop_path=0.1)


def adapter_options(options) -> dict:
  """The adapter config block with its defaults; unknown keys and values fail with the valid
  ones."""
  options = dict(options.to_dict() if hasattr(options, "to_dict") else options)
  unknown_options(options, tuple(DEFAULTS), "model.adapter")
  out = {**DEFAULTS, **options}
  for key, valid in (("kind", KINDS), ("kernel", KERNELS), ("sparsify", SPARSIFY)):
    if out[key] not in valid:
      raise ValueError(f"model.adapter.{key}={out[key]!r}; valid: {', '.join(valid)}")
  if not 0.0 <= out["sparsity"] < 1.0:
    raise ValueError(f"model.adapter.sparsity={out['sparsity']} must be in [0, 1)")
  if out["kind"] == "kernel" and out["rank"] % out["heads"]:
    raise ValueError(f"model.adapter.rank={out['rank']} must be a multiple of heads={out['heads']}")
  return out


# --- the delta matrix, as pure functions --------------------------------------------------------
def head_coefficients(heads: int, coeff: float = 0.1) -> jnp.ndarray:
  """c_h = coeff * (-1)^h (official `shared_coeff_fc`)."""
  return jnp.asarray([coeff * (-1) ** h for h in range(heads)], jnp.float32)


def pairwise_kernel(a, b, kernel: str):
  """k(a_i, b_j) for a [H, n, d], b [H, m, d] -> [H, n, m]. Euclidean distances as torch.cdist
  computes them for large inputs: sqrt(max(|a|^2 + |b|^2 - 2 a.b, 1e-30)) (matmul form)."""
  dot = jnp.einsum("hnd,hmd->hnm", a, b, precision=jax.lax.Precision.HIGHEST)
  if kernel == "linear":
    return dot
  if kernel == "sigmoid":
    return jnp.tanh(dot)
  sq = (jnp.sum(a * a, -1)[:, :, None] + jnp.sum(b * b, -1)[:, None, :] - 2.0 * dot)
  sq = jnp.maximum(sq, 1e-30)
  if kernel == "rbf":
    return jnp.exp(-sq)
  return jnp.sqrt(sq)  # distance, mixed


def kernel_delta(a, b, *, kernel: str = "distance", coeff: float = 0.1, mix=None):
  """dW = sum_h c_h k(A_h, B_h) [n_in, n_out]; `mixed` adds alpha softmax(dW / gamma) + beta with
  `mix = (alpha, gamma, beta)`."""
  c = head_coefficients(a.shape[0], coeff)
  dw = jnp.sum(c[:, None, None] * pairwise_kernel(a, b, kernel), axis=0)
  if kernel == "mixed":
    alpha, gamma, beta = mix
    dw = dw + alpha * jax.nn.softmax(dw / gamma, axis=-1) + beta
  return dw


def _kth_smallest_bits(bits, k: int):
  """The k-th smallest (0-based) of non-negative int32 values: bisection on the value, 31 counting
  passes (each a fused compare-and-sum, no sort)."""
  def body(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits <= mid) >= k + 1
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)
  return jax.lax.fori_loop(0, 31, body, (jnp.int32(0), jnp.int32(2**31 - 1)))[1]


def quantile_nonnegative(x, q: float):
  """`torch.quantile(x, q)` (linear interpolation between the floor(q (N - 1))-th and the next
  order statistic) of non-negative floats, by selection instead of sorting: float32 bit patterns of
  non-negative numbers order as their int32 values, so the order statistic is found by bisection.
  XLA sorts 2.4M-entry matrices slowly (CPU: ~50x slower than this)."""
  x = x.reshape(-1).astype(jnp.float32)
  pos = q * (x.size - 1)
  k = int(math.floor(pos))
  frac = jnp.float32(pos - k)
  low = jax.lax.bitcast_convert_type(_kth_smallest_bits(
      jax.lax.bitcast_convert_type(x, jnp.int32), k), jnp.float32)
  if k + 1 >= x.size:
    return low
  high = jnp.where(jnp.sum(x <= low) >= k + 2, low, jnp.min(jnp.where(x > low, x, jnp.inf)))
  return low + frac * (high - low)


def sparsify(dw, sparsity: float, form: str = "code"):
  """Competition-based sparsification (SNELL Eq. 5): thr = quantile(|dW|, s);
  `code`: dW * M with M = |dW| 1[|dW| > thr]; `soft_threshold`: dW * max(|dW| - thr, 0). The factor
  is a constant for the gradient (computed from a stop-gradient copy, as the official code)."""
  mag = jax.lax.stop_gradient(jnp.abs(dw))
  thr = quantile_nonnegative(mag, sparsity)
  factor = jnp.where(mag > thr, mag, 0.0) if form == "code" else jnp.maximum(mag - thr, 0.0)
  return dw * factor


def sparse_kernel_delta(a, b, mix=None, *, kernel="distance", coeff=0.1, sparsity=0.0,
                        form="code"):
  """dW_s: the kernel delta, sparsified when `sparsity` > 0 (s = 0 is the official KLoRA)."""
  dw = kernel_delta(a, b, kernel=kernel, coeff=coeff, mix=mix)
  return sparsify(dw, sparsity, form) if sparsity > 0 else dw


def _apply_delta(x, a, b, mix, *, static):
  dw = sparse_kernel_delta(a, b, mix, **dict(static))
  return jnp.einsum("...i,io->...o", x, dw.astype(x.dtype))


@functools.lru_cache(maxsize=None)
def _rematerialised(static):
  return jax.checkpoint(functools.partial(_apply_delta, static=static))


def kernel_adapter_apply(x, a, b, mix=None, *, kernel="distance", coeff=0.1, sparsity=0.0,
                         form="code"):
  """x dW_s with the merge, quantile and matmul rematerialised in the backward pass."""
  static = tuple(sorted(dict(kernel=kernel, coeff=coeff, sparsity=sparsity, form=form).items()))
  return _rematerialised(static)(x, a, b, mix)


def _uniform(bound):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


# --- modules --------------------------------------------------------------------------------------
class Adapter(nnx.Module):
  """One adapted matrix: `adapter(x)` = DropPath(x dW_s) (the official `TuningModule`)."""

  def __init__(self, n_in: int, n_out: int, options: dict, *, rngs: nnx.Rngs):
    o = adapter_options(options)
    self.kind, self.kernel, self.coeff = o["kind"], o["kernel"], float(o["coeff"])
    self.sparsity, self.form = float(o["sparsity"]), o["sparsify"]
    r, h = int(o["rank"]), int(o["heads"])
    if self.kind == "lora":
      self.a = nnx.Param(_uniform(1 / math.sqrt(n_in))(rngs.params(), (n_in, r)))
      self.b = nnx.Param(jnp.zeros((r, n_out)))
    else:
      self.a = nnx.Param(_uniform(1 / math.sqrt(n_in * r // h))(rngs.params(), (h, n_in, r // h)))
      self.b = nnx.Param(_uniform(1 / math.sqrt(n_out * r // h))(rngs.params(), (h, n_out, r // h)))
    self.mix = nnx.Param(jnp.asarray([1.0, 1.0, 0.0])) if self.kernel == "mixed" else None
    self.drop_path = drop_path(o["drop_path"], 3, rngs=rngs)

  def _mix(self):
    return None if self.mix is None else tuple(self.mix[...][i] for i in range(3))

  def delta_weight(self):
    """The applied dW_s [n_in, n_out] (for analysis; the forward never keeps it)."""
    if self.kind == "lora":
      return self.a[...] @ self.b[...]
    return sparse_kernel_delta(self.a[...], self.b[...], self._mix(), kernel=self.kernel,
                               coeff=self.coeff, sparsity=self.sparsity, form=self.form)

  def __call__(self, x):
    if self.kind == "lora":
      y = (x @ self.a[...].astype(x.dtype)) @ self.b[...].astype(x.dtype)
    else:
      y = kernel_adapter_apply(x, self.a[...], self.b[...], self._mix(), kernel=self.kernel,
                               coeff=self.coeff, sparsity=self.sparsity, form=self.form)
    return self.drop_path(y)


class AdaptedAttention(Attention):
  """timm attention (fused `qkv`, `proj`) plus separate q, k, v and proj adapters."""

  def __init__(self, dim, num_heads, adapter: dict, *, dtype, rngs):
    super().__init__(dim, num_heads, dtype=dtype, rngs=rngs)
    o = adapter_options(adapter)
    self.adapter_q = Adapter(dim, dim, o, rngs=rngs)
    self.adapter_k = Adapter(dim, dim, o, rngs=rngs)
    self.adapter_v = Adapter(dim, dim, o, rngs=rngs)
    self.adapter_proj = Adapter(dim, dim, o, rngs=rngs)
    self.adapter_drop = nnx.Dropout(o["dropout"], rngs=rngs)

  def __call__(self, x):
    b, n, c = x.shape
    xd = self.adapter_drop(x)
    delta = jnp.concatenate([self.adapter_q(xd), self.adapter_k(xd), self.adapter_v(xd)], -1)
    qkv = (self.qkv(x) + delta).reshape(b, n, 3, self.num_heads, c // self.num_heads)
    out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]).reshape(b, n, c)
    return self.proj(out) + self.adapter_proj(out)


class AdaptedMlp(Mlp):
  """timm MLP plus fc1 and fc2 adapters, each on a separately dropped-out input."""

  def __init__(self, dim, hidden, adapter: dict, *, dtype, rngs):
    super().__init__(dim, hidden, dtype=dtype, rngs=rngs)
    o = adapter_options(adapter)
    self.adapter_fc1 = Adapter(dim, hidden, o, rngs=rngs)
    self.adapter_fc2 = Adapter(hidden, dim, o, rngs=rngs)
    self.adapter_drop = nnx.Dropout(o["dropout"], rngs=rngs)

  def __call__(self, x):
    h = gelu(self.fc1(x) + self.adapter_fc1(self.adapter_drop(x)))
    return self.fc2(h) + self.adapter_fc2(self.adapter_drop(h))


def adapters(model: nnx.Module) -> dict[str, Adapter]:
  """Every `Adapter` of `model` by its '/'-joined path."""
  return {"/".join(str(p) for p in path): m for path, m in nnx.iter_graph(model)
          if isinstance(m, Adapter)}

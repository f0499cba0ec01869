"""SNELL / kernelized LoRA adapters (models/peft.py) against the official code
(github.com/ssfgunner/SNELL; fixture made by tests/fixtures/snell/make_fixtures.py), plus the
sparsification, rank and rematerialisation properties the paper relies on."""
from __future__ import annotations

import contextlib
import io
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import ad_checkpoint

import models
from models import peft
from models.vit import Block

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "snell", "snell.npz")
RTOL = 1e-5


@pytest.fixture(scope="module")
def ref():
  with np.load(FIXTURE) as f:
    return {k: f[k] for k in f.files}


def close(ours, theirs, rtol=RTOL):
  """Relative to the array's scale (max |theirs|): elementwise rtol on the larger entries."""
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


@pytest.mark.parametrize("name,sparsity", [("klora", 0.0), ("snell", 0.5)])
def test_kernel_adapter_matches_official(ref, name, sparsity):
  a, b = ref[f"{name}/In_Qs"], ref[f"{name}/Out_Qs"]
  x, g = ref["x"], ref["g"]
  y, vjp = jax.vjp(lambda x, a, b: peft.kernel_adapter_apply(x, a, b, sparsity=sparsity), x, a, b)
  dx, da, db = vjp(jnp.asarray(g))
  close(y, ref[f"{name}/y"])
  close(da, ref[f"{name}/d/In_Qs"])
  close(db, ref[f"{name}/d/Out_Qs"])
  close(dx, ref[f"{name}/dx"])


def _block_from_official(ref):
  block = Block(16, 2, 4.0, 0.0, dtype=jnp.float32, rngs=nnx.Rngs(0),
                adapter=dict(kind="kernel", rank=8, sparsity=0.5))
  p = {k[len("block/param/"):]: v for k, v in ref.items() if k.startswith("block/param/")}
  block.norm1.scale[...], block.norm1.bias[...] = p["norm1.weight"], p["norm1.bias"]
  block.norm2.scale[...], block.norm2.bias[...] = p["norm2.weight"], p["norm2.bias"]
  block.attn.qkv.kernel[...] = np.concatenate([p[f"attn.{n}.weight"].T for n in "qkv"], 1)
  block.attn.qkv.bias[...] = np.concatenate([p[f"attn.{n}.bias"] for n in "qkv"])
  for ours, theirs in (("attn.proj", "attn.proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
    mod = block
    for part in ours.split("."):
      mod = getattr(mod, part)
    mod.kernel[...], mod.bias[...] = p[f"{theirs}.weight"].T, p[f"{theirs}.bias"]
  pairs = {f"attn.additional_{n}": getattr(block.attn, f"adapter_{n}")
           for n in ("q", "k", "v", "proj")}
  pairs.update({f"mlp.additional_{n}": getattr(block.mlp, f"adapter_{n}") for n in ("fc1", "fc2")})
  for theirs, adapter in pairs.items():
    adapter.a[...] = p[f"{theirs}.learnable.In_Qs"]
    adapter.b[...] = p[f"{theirs}.learnable.Out_Qs"]
  block.eval()
  return block, pairs


def test_vit_block_matches_official_block(ref):
  """Our ViT block with SNELL-8 (s = 0.5) on the fused qkv = the official BlockSNELLParallel with
  separate q, k, v: output and the gradients of every adapter factor."""
  block, pairs = _block_from_official(ref)
  graphdef, params, rest = nnx.split(block, nnx.Param, ...)

  def f(params, x):
    return nnx.merge(graphdef, params, rest)(x)
  y, vjp = jax.vjp(f, params, jnp.asarray(ref["block/x"]))
  dparams, dx = vjp(jnp.asarray(ref["block/g"]))
  close(y, ref["block/y"])
  close(dx, ref["block/dx"])
  grads = nnx.merge(graphdef, dparams, rest)
  for theirs in pairs:
    mod, name = theirs.split(".")
    adapter = getattr(getattr(grads, mod), name.replace("additional_", "adapter_"))
    close(adapter.a[...], ref[f"block/d/{theirs}.learnable.In_Qs"])
    close(adapter.b[...], ref[f"block/d/{theirs}.learnable.Out_Qs"])


def test_sparsify_keeps_the_top_fraction_with_squared_magnitude():
  """Code form: the (1 - s) largest |dW| survive as dW |dW|, the rest are 0; gradient = M."""
  rng = np.random.default_rng(0)
  dw = rng.normal(size=(6, 10)).astype(np.float32)
  out, vjp = jax.vjp(lambda w: peft.sparsify(w, 0.7), dw)
  thr = np.quantile(np.abs(dw), 0.7)  # NumPy's default is the same linear interpolation
  keep = np.abs(dw) > thr
  assert keep.sum() == 18  # 30% of 60
  np.testing.assert_allclose(out, np.where(keep, dw * np.abs(dw), 0.0), rtol=1e-6)
  (grad,) = vjp(jnp.ones_like(dw))
  np.testing.assert_allclose(grad, np.where(keep, np.abs(dw), 0.0), rtol=1e-6)
  soft = peft.sparsify(dw, 0.7, "soft_threshold")
  np.testing.assert_allclose(soft, dw * np.maximum(np.abs(dw) - thr, 0.0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.37, 0.5, 0.995, 0.999])
def test_quantile_by_selection_equals_numpy(q):
  rng = np.random.default_rng(3)
  x = np.abs(rng.normal(size=(37, 53))).astype(np.float32)
  x[0, :5] = x[1, :5]  # ties
  x[2, :3] = 0.0
  np.testing.assert_allclose(peft.quantile_nonnegative(jnp.asarray(x), q),
                             np.quantile(x.astype(np.float64), q), rtol=1e-6)


def test_separate_thresholds_on_fused_qkv():
  """Each of q, k, v keeps exactly its own top (1 - s): one quantile over the fused matrix would
  not (the three adapters are scaled 1, 10, 100 here)."""
  block = Block(16, 2, 4.0, 0.0, dtype=jnp.float32, rngs=nnx.Rngs(1),
                adapter=dict(kind="kernel", rank=8, sparsity=0.75))
  for scale, name in zip((1.0, 10.0, 100.0), "qkv"):
    ad = getattr(block.attn, f"adapter_{name}")
    ad.a[...] = ad.a[...] * scale
    ad.b[...] = ad.b[...] * scale
  for name in "qkv":
    nonzero = int(np.count_nonzero(getattr(block.attn, f"adapter_{name}").delta_weight()))
    assert nonzero == 64  # 25% of 16 x 16, for each of q, k, v
  block.eval()
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 16, 16)), jnp.float32)
  delta = block.attn.adapter_q(x)
  np.testing.assert_allclose(delta, x @ block.attn.adapter_q.delta_weight(), rtol=1e-5, atol=1e-6)


def test_merged_delta_rank():
  """LoRA-8 merges to rank 8, the distance kernel (r = 8) to near full rank (paper Sec. 3.2)."""
  rngs = nnx.Rngs(0)
  lora = peft.Adapter(64, 256, dict(kind="lora", rank=8), rngs=rngs)
  lora.b[...] = jax.random.normal(jax.random.key(1), lora.b.shape)
  kern = peft.Adapter(64, 256, dict(kind="kernel", rank=8), rngs=rngs)
  linear = peft.Adapter(64, 256, dict(kind="kernel", kernel="linear", rank=8), rngs=rngs)
  assert np.linalg.matrix_rank(np.asarray(lora.delta_weight())) == 8
  assert np.linalg.matrix_rank(np.asarray(linear.delta_weight())) == 8
  assert np.linalg.matrix_rank(np.asarray(kern.delta_weight()), tol=None) >= 60


def test_mixed_kernel_equals_definition():
  rngs = nnx.Rngs(0)
  ad = peft.Adapter(5, 7, dict(kind="kernel", kernel="mixed", rank=4), rngs=rngs)
  ad.mix[...] = jnp.asarray([0.5, 2.0, 0.1])
  a, b = np.asarray(ad.a[...], np.float64), np.asarray(ad.b[...], np.float64)
  dist = np.linalg.norm(a[:, :, None] - b[:, None], axis=-1)
  dw = 0.1 * dist[0] - 0.1 * dist[1]
  e = np.exp(dw / 2.0 - (dw / 2.0).max(-1, keepdims=True))
  expect = dw + 0.5 * e / e.sum(-1, keepdims=True) + 0.1
  np.testing.assert_allclose(ad.delta_weight(), expect, rtol=1e-5)


def test_adapter_backward_does_not_keep_the_merged_delta():
  """Under jax.checkpoint the residuals of x dW_s are the inputs only: nothing n_in x n_out."""
  x = jnp.ones((4, 48))
  a = jnp.ones((2, 48, 4)) * 0.1
  b = jnp.ones((2, 96, 4)) * 0.2
  f = lambda a, b: peft.kernel_adapter_apply(x, a, b, sparsity=0.5).sum()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    ad_checkpoint.print_saved_residuals(f, a, b)
  shapes = re.findall(r"f32\[([\d,]*)\]", out.getvalue())
  assert shapes and "48,96" not in shapes and "96,48" not in shapes, out.getvalue()
  plain = io.StringIO()  # without jax.checkpoint the merged delta is saved: the test can fail
  with contextlib.redirect_stdout(plain):
    ad_checkpoint.print_saved_residuals(
        lambda a, b: (x @ peft.sparse_kernel_delta(a, b, sparsity=0.5)).sum(), a, b)
  assert "f32[48,96]" in plain.getvalue()


def test_adapter_options_validate():
  with pytest.raises(KeyError, match="sparsity"):
    models.build("vit_b16", embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=16,
                 adapter=dict(kind="kernel", sparsty=0.5))
  with pytest.raises(ValueError, match="distance"):
    peft.adapter_options(dict(kernel="cosine"))

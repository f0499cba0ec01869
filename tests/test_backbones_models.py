"""Backbone variants: exact parameter counts (against the official PyTorch models), output shapes and
MAC counts at 224 (nothing initialised: jax.eval_shape / make_jaxpr), MSDA against a NumPy loop,
RandAugment. (PSLT's shift masks are checked by the official-output fixture, whose
14x14 ladder stage has shifted 7x7 windows.)"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from ml_pipelines.jobs import flops
from ml_pipelines.data import augment
from models import dilateformer

# Parameter counts of the official PyTorch models (counted from DilateFormer's / PSLT's own code,
# torchvision's ResNets, timm's ViTs); GFLOPs (MACs) reported by the papers (fvcore), tolerance 3%.
EXPECTED = {
    "resnet18": (11_689_512, 1.82), "resnet34": (21_797_672, 3.67), "resnet50": (25_557_032, 4.11),
    "vit_b16": (86_567_656, 17.58), "vit_l16": (304_326_632, 61.60),
    "dilateformer_tiny": (17_238_744, 3.18), "dilateformer_small": (24_057_504, 4.61),
    "dilateformer_base": (47_432_376, 9.96),
    "pslt_tiny": (4_298_988, 0.92), "pslt": (9_257_302, 2.00), "pslt_large": (16_099_312, 3.50),
}
FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "vit_b16": 768, "vit_l16": 1024,
            "dilateformer_tiny": 576, "dilateformer_small": 576, "dilateformer_base": 768,
            "pslt_tiny": 384, "pslt": 576, "pslt_large": 768}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_params_flops_and_shapes(name):
  params, gflops = EXPECTED[name]
  model = flops.abstract_model(name)
  assert flops.param_count(model) == params
  graphdef, state = nnx.split(model)

  def forward(state, x):
    m = nnx.merge(graphdef, state)
    m.eval()
    return m(x)
  closed = jax.make_jaxpr(forward)(state, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert closed.out_avals[0].shape == (1, 1000)
  macs = flops.jaxpr_macs(closed.jaxpr) / 1e9
  assert abs(macs - gflops) / gflops < 0.03, macs
  assert model.num_features == FEATURES[name]


@pytest.mark.parametrize("name,kw,size,stride", [
    ("resnet50", dict(width=4), 64, 32),
    ("vit_b16", dict(embed_dim=8, depth=1, num_heads=2, img_size=64), 64, 16),
    ("dilateformer_tiny", dict(embed_dim=6, depths=(1, 1, 1, 1), num_heads=(3, 3, 3, 3)), 64, 32),
    ("pslt", dict(embed_dim=6, depths=(1, 1), conv_depths=(1, 1), img_size=64), 64, 32),
])
def test_feature_map_shapes(name, kw, size, stride):
  model = nnx.eval_shape(lambda: models.build(name, num_classes=7, **kw))
  x = jax.ShapeDtypeStruct((3, size, size, 3), jnp.float32)
  fmap = nnx.eval_shape(lambda m, v: m.features(v), model, x)
  logits = nnx.eval_shape(lambda m, v: m(v), model, x)
  assert fmap.shape == (3, size // stride, size // stride, model.num_features)
  assert logits.shape == (3, 7)


def test_num_classes_none_returns_pooled_features():
  m = models.build("resnet18", width=4, num_classes=None)
  out = m(jnp.ones((1, 32, 32, 3)))
  np.testing.assert_allclose(out, m.features(jnp.ones((1, 32, 32, 3))).mean(axis=(1, 2)), rtol=1e-6)


def _msda_reference(x, wqkv, bqkv, wproj, bproj, dilations, heads_per_group):
  """Direct loop: every query pixel, every head, its 3x3 dilated neighbours; outside -> zero key
  and value with logit 0 (unmasked, as the official nn.Unfold)."""
  h, w, c = x.shape
  qkv = x @ wqkv + bqkv
  g = len(dilations)
  cg = c // g
  d = cg // heads_per_group
  out = np.zeros((h, w, c))
  for gi, r in enumerate(dilations):
    q, k, v = (qkv[..., s * c + gi * cg: s * c + (gi + 1) * cg] for s in range(3))
    for i in range(h):
      for j in range(w):
        for hd in range(heads_per_group):
          sl = slice(hd * d, (hd + 1) * d)
          logits, vals = [], []
          for p in (-1, 0, 1):
            for qq in (-1, 0, 1):
              y, z = i + p * r, j + qq * r
              inside = 0 <= y < h and 0 <= z < w
              kk = k[y, z, sl] if inside else np.zeros(d)
              vals.append(v[y, z, sl] if inside else np.zeros(d))
              logits.append(q[i, j, sl] @ kk * d ** -0.5)
          a = np.exp(np.array(logits) - max(logits))
          a /= a.sum()
          out[i, j, gi * cg + hd * d: gi * cg + (hd + 1) * d] = a @ np.array(vals)
  return out @ wproj + bproj


def test_msda_matches_numpy_loop_with_unmasked_zero_borders():
  c, heads = 12, 6  # 2 heads per dilation group, head_dim 2
  attn = dilateformer.MultiDilateLocalAttention(c, heads, (1, 2, 3), dtype=jnp.float32,
                                                rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  attn.qkv.bias[...] = jnp.asarray(rng.normal(size=3 * c), jnp.float32)
  attn.proj.bias[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
  x = rng.normal(size=(1, 5, 6, c)).astype(np.float32)  # 5x6: dilation 3 reaches past every border
  got = np.asarray(attn(jnp.asarray(x)))[0]
  want = _msda_reference(x[0].astype(np.float64), np.asarray(attn.qkv.kernel[...])[0, 0],
                         np.asarray(attn.qkv.bias[...]), np.asarray(attn.proj.kernel[...]),
                         np.asarray(attn.proj.bias[...]), (1, 2, 3), 2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rand_augment_is_deterministic_and_changes_images():
  img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
  a = augment.rand_augment(img, np.random.default_rng(5), magnitude_std=0.5)
  b = augment.rand_augment(img, np.random.default_rng(5), magnitude_std=0.5)
  np.testing.assert_array_equal(a, b)
  changed = [not np.array_equal(img, augment.rand_augment(img, np.random.default_rng(s)))
             for s in range(20)]
  assert 5 < sum(changed) < 20


def test_augment_ops_against_definitions():
  img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
  np.testing.assert_array_equal(augment.solarize(img, 5.0), np.where(img >= 128, 255 - img, img))
  np.testing.assert_array_equal(augment.posterize(img, 10.0), img & 0xF0)
  t = augment.translate_x(img, 10.0 * 1 / 0.45 / 4, sign=1)  # shift by exactly one pixel
  np.testing.assert_array_equal(t[:, :-1], img[:, 1:])
  assert (t[:, -1] == 128).all()

"""One FLOP counter for every model: multiply-accumulates of the traced forward pass.

The papers' GFLOPs (fvcore, ptflops) are multiply-adds of matrix products and convolutions; elementwise
ops, norms and softmax are (nearly) free in those counts. We count the same thing exactly from the
jaxpr: for `dot_general` batch x free(lhs) x free(rhs) x contracted, for `conv_general_dilated`
output elements x (input channels / groups) x kernel window, recursing into every sub-jaxpr (jit,
remat, custom_vjp, scan bodies times their length). No device run is needed (the model is traced
with abstract inputs), so it works for the largest variants on a laptop.

    python -m ml_pipelines.jobs.flops [--models resnet50,vit_b16] [--image_size 224]

prints the parameter / GFLOPs table (every backbone by default; tracing them all takes about a
minute on a CPU).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _sub_jaxprs(eqn):
  for v in eqn.params.values():
    for item in (v if isinstance(v, (tuple, list)) else (v,)):
      if isinstance(item, jax.extend.core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax.extend.core.Jaxpr):
        yield item


def _eqn_macs(eqn) -> int:
  name = eqn.primitive.name
  if name == "dot_general":
    (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    out = math.prod(eqn.outvars[0].aval.shape)
    return out * math.prod(lhs[d] for d in lc)
  if name == "conv_general_dilated":
    dn = eqn.params["dimension_numbers"]
    rhs = eqn.invars[1].aval.shape
    kernel_in = rhs[dn.rhs_spec[1]]  # already divided by feature_group_count
    window = math.prod(rhs[d] for d in dn.rhs_spec[2:])
    return math.prod(eqn.outvars[0].aval.shape) * kernel_in * window
  return 0


def jaxpr_macs(jaxpr) -> int:
  """Multiply-accumulates of matmuls and convolutions in `jaxpr`, sub-jaxprs included."""
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_macs(eqn)
    mult = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for sub in _sub_jaxprs(eqn):
      total += mult * jaxpr_macs(sub)
  return total


def count_macs(fn, *args) -> int:
  """MACs of `fn(*args)`; args may be `jax.ShapeDtypeStruct`s."""
  return jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def model_macs(model: nnx.Module, image_size: int = 224, in_channels: int = 3) -> int:
  """MACs of one forward pass of `model` (eval mode) on one image_size^2 image."""
  graphdef, state = nnx.split(model)

  def forward(state, x):
    m = nnx.merge(graphdef, state)
    m.eval()
    return m(x)
  x = jax.ShapeDtypeStruct((1, image_size, image_size, in_channels), jnp.float32)
  return count_macs(forward, state, x)


def param_count(model: nnx.Module) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def abstract_model(name: str, **overrides) -> nnx.Module:
  """The model with abstract (shape-only) parameters: nothing is initialised."""
  import models
  return nnx.eval_shape(lambda: models.build(name, **overrides))


BACKBONES = ("resnet18", "resnet34", "resnet50", "vit_b16", "vit_l16", "dilateformer_tiny",
             "dilateformer_small", "dilateformer_base", "pslt_tiny", "pslt", "pslt_large")


def table(names=BACKBONES, image_size: int = 224) -> str:
  rows = ["| model | params | GFLOPs (MACs) at %d |" % image_size, "| --- | --- | --- |"]
  for name in names:
    m = abstract_model(name)
    rows.append(f"| {name} | {param_count(m) / 1e6:.2f}M | {model_macs(m, image_size) / 1e9:.2f} |")
  return "\n".join(rows)


def main(argv=None) -> None:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m ml_pipelines.jobs.flops",
                                   description="Parameters and GFLOPs (multiply-accumulates of "
                                   "matmuls and convolutions) of the backbones, without a device.")
  parser.add_argument("--models", default=",".join(BACKBONES),
                      help=f"comma-separated names (default: all of {', '.join(BACKBONES)})")
  parser.add_argument("--image_size", type=int, default=224)
  args = parser.parse_args(argv)
  names = [n for n in args.models.split(",") if n]
  unknown = sorted(set(names) - set(BACKBONES))
  if unknown:
    parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(BACKBONES)}")
  jax.config.update("jax_platforms", "cpu")
  print(table(names, args.image_size))


if __name__ == "__main__":
  main()

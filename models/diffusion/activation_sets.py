"""The released activation sets of Meng et al. 2024 (github.com/Darkbblue/generic-diffusion-feature,
`feature/configs/config_15_*.json`) and the official JSON format, plus the shapes of every
activation.

`load(spec)` takes a set name below or the path of an official config file (`{"id": true, ...}`),
and returns `(ids, attention)`: the amalgamation set is meant with `--attention up_cross`.

- practical (3520 channels at 512 px): up-level1-repeat1-vit-block0-cross-q,
  up-level1-repeat2-res-out, up-level2-repeat1-vit-block0-cross-q,
  up-level3-repeat0-vit-block0-self-k;
- legacy (3520): up-level{0,1,2}-upsampler-out, up-level3-repeat2-vit-out;
- amalgamation (2880 + 154 maps): up-level{1,2}-repeat1-vit-block0-cross-q, up-level2-upsampler-out,
  up-level3-repeat0-vit-block0-self-k, with the `up_cross` attention store;
- xl_practical (SDXL, `config_xl_practical.json`): up-level0-repeat0-vit-block{7,5}-out,
  up-level1-repeat0-vit-block0-cross-q, up-level1-repeat0-vit-block0-out.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from models.diffusion.taps import ALL

SETS = {
    "practical": (("up-level1-repeat1-vit-block0-cross-q", "up-level1-repeat2-res-out",
                   "up-level2-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k"),
                  ()),
    "legacy": (("up-level0-upsampler-out", "up-level1-upsampler-out", "up-level2-upsampler-out",
                "up-level3-repeat2-vit-out"), ()),
    "amalgamation": (("up-level1-repeat1-vit-block0-cross-q",
                      "up-level2-repeat1-vit-block0-cross-q", "up-level2-upsampler-out",
                      "up-level3-repeat0-vit-block0-self-k"),
                     ("up_cross",)),
    "xl_practical": (("up-level0-repeat0-vit-block7-out", "up-level0-repeat0-vit-block5-out",
                      "up-level1-repeat0-vit-block0-cross-q", "up-level1-repeat0-vit-block0-out"),
                     ()),
}


def load(spec: str, attention: tuple[str, ...] | None = None):
  """(tap ids in the file's order, attention categories) of a set name or an official JSON file."""
  if spec in SETS:
    ids, default_attention = SETS[spec]
  elif os.path.exists(spec):
    with open(spec) as f:
      ids, default_attention = tuple(k for k, v in json.load(f).items() if v), ()
  else:
    raise ValueError(f"activation set {spec!r} is neither a file nor one of {sorted(SETS)}")
  return ids, tuple(default_attention if attention is None else attention)


def activation_shapes(unet, latent_size: int, tokens: int = 77, batch: int = 1,
                      attention: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
  """Every activation id of `unet` (in execution order) -> its shape, traced abstractly (no FLOPs,
  no memory: `unet` may itself be abstract)."""
  graphdef, state = nnx.split(unet)
  block = next(b for b in unet.down_blocks if b.attentions)
  context_dim = block.attentions[0].transformer_blocks[0].attn2.to_k.kernel.shape[0]
  x = jax.ShapeDtypeStruct((batch, latent_size, latent_size, unet.conv_in.kernel.shape[2]),
                           jnp.float32)
  c = jax.ShapeDtypeStruct((batch, tokens, context_dim), jnp.float32)
  added = None
  if unet.addition_time_embed_dim:  # SDXL: pooled text [B, P] and six ids
    pooled = unet.add_embedding.linear_1.kernel.shape[0] - 6 * unet.addition_time_embed_dim
    added = {"text_embeds": jax.ShapeDtypeStruct((batch, pooled), jnp.float32),
             "time_ids": jax.ShapeDtypeStruct((batch, 6), jnp.float32)}
  fn = lambda s, x, c, a: nnx.merge(graphdef, s)(x, 51, c, taps=frozenset({ALL}),
                                                 attention=attention, added=a)[1]
  out = jax.eval_shape(fn, state, x, c, added)
  return {k: tuple(v.shape) for k, v in out.items()}

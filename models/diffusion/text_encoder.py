"""SD-1.5's text encoder: the CLIP ViT-L/14 text transformer (`models.clip.TextTransformer`,
per-token states after `ln_final`) loaded from a transformers `CLIPTextModel` directory
(`text_encoder/`).

transformers -> ours (keys with or without the `text_model.` prefix):
`embeddings.{token,position}_embedding` -> `token_embedding`,
`positional_embedding`; `encoder.layers.i.self_attn.{q,k,v}_proj` -> one `attn/qkv` (q | k | v);
`out_proj` -> `attn/proj`; `layer_norm{1,2}` -> `ln_{1,2}`; `mlp.fc{1,2}` -> `mlp/fc{1,2}`;
`final_layer_norm` -> `ln_final`.
"""
from __future__ import annotations

import os
import re

import numpy as np

from models import clip, convert
from models.diffusion import weights


@convert.register("transformers_clip_text")
class TransformersCLIPText(convert.TorchStateDict):
  ignore = re.compile(r"position_ids$")
  _LAYER = re.compile(r"^transformer/resblocks/(\d+)/(.+)/(kernel|bias|scale)$")
  _IN_LAYER = {"attn/proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
               "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}
  _TOP = {"token_embedding/embedding": "embeddings.token_embedding.weight",
          "positional_embedding": "embeddings.position_embedding.weight",
          "ln_final/scale": "final_layer_norm.weight",
          "ln_final/bias": "final_layer_norm.bias"}

  def rename_file(self, theirs):
    """Files saved by transformers < 5 (the SD-1.5 release) prefix every key with `text_model.`."""
    return {k.removeprefix("text_model."): v for k, v in theirs.items()}

  def keys(self, path):
    if path in self._TOP:
      return (self._TOP[path],)
    m = self._LAYER.match(path)
    if not m:
      return (path,)
    layer, module, leaf = m.groups()
    leaf = "weight" if leaf in ("kernel", "scale") else leaf
    prefix = f"encoder.layers.{layer}"
    if module == "attn/qkv":
      return tuple(f"{prefix}.self_attn.{p}_proj.{leaf}" for p in "qkv")
    return (f"{prefix}.{self._IN_LAYER[module]}.{leaf}",)

  def to_ours(self, path, arrays):
    if path.endswith("attn/qkv/kernel"):
      return np.concatenate(arrays, axis=0).T
    if path.endswith("attn/qkv/bias"):
      return np.concatenate(arrays)
    return super().to_ours(path, arrays)


def load_text_encoder(weights_dir: str, component: str | None = "text_encoder"
                      ) -> clip.TextTransformer:
  """`TextTransformer` (no projection) with the weights of a transformers `CLIPTextModel` dir."""
  path = weights.component_dir(weights_dir, component)
  config = weights.read_config(path)
  model = weights.build_abstract(clip.TextTransformer, dict(
      width=config["hidden_size"], layers=config["num_hidden_layers"],
      heads=config["num_attention_heads"], output_dim=None,
      context_length=config["max_position_embeddings"], vocab_size=config["vocab_size"],
      quick_gelu_act=config.get("hidden_act", "quick_gelu") == "quick_gelu"))
  files = [f for f in weights.WEIGHT_FILES if os.path.exists(os.path.join(path, f))]
  return convert.load_into(model, convert.load_state_dict(os.path.join(path, files[0])),
                           converter=TransformersCLIPText())

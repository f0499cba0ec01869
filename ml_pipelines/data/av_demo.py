"""`av_demo`: a small synthetic audio-visual set with a built-in modality imbalance (no download).

Made to show what OGM-GE (Peng et al., CVPR 2022, Sec. 3.1) calls under-optimisation of the weaker
modality: audio is easy (one bright frequency band per class, found in a few steps) but its label
is right only with probability `audio_reliability`; the visual frames always carry the true class,
as a faint class template (a fixed random pattern) under strong noise, so they are harder to learn.
Joint training fits audio first and then gets little gradient for the visual branch; a visual-only
model learns it, and a model that learns both beats either modality alone.

Splits: train (2000), test (500) and val (500, a held-out set for methods that estimate weights on
unseen data, such as G-Blending). Options (config.data): num_classes (10), train_size, test_size,
val_size, freq (16), time (16), frames (2), size (16), audio_reliability (0.85), visual_signal
(0.25), seed (0). (Unimodal reference runs mute a modality with the task's `mute_modality`.)
Examples: audio [freq, time, 1] float32, visual [frames, size, size, 3] float32, label int32.
"""
from __future__ import annotations

import functools

import numpy as np

from ml_pipelines import data
DEFAULTS = dict(num_classes=10, train_size=2000, test_size=500, val_size=500, freq=16, time=16,
                frames=2, size=16, audio_reliability=0.85, visual_signal=0.25, seed=0)
SPLITS = ("train", "test", "val")


@functools.lru_cache(maxsize=8)
def make(num_classes, train_size, test_size, val_size, freq, time, frames, size, audio_reliability,
         visual_signal, seed) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "test", "val": arrays}, deterministic in the arguments (val is drawn last, so train
  and test do not depend on its size)."""
  rng = np.random.default_rng(seed)
  templates = rng.standard_normal((num_classes, size, size, 3)).astype(np.float32)
  bands = np.linspace(0, freq - 1, num_classes).round().astype(int)
  out = {}
  for split, n in (("train", train_size), ("test", test_size), ("val", val_size)):
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    wrong = rng.random(n) > audio_reliability
    audio_class = np.where(wrong, rng.integers(0, num_classes, n), labels)
    audio = 0.3 * rng.standard_normal((n, freq, time, 1)).astype(np.float32)
    audio[np.arange(n), bands[audio_class], :, 0] += 2.0
    visual = rng.standard_normal((n, frames, size, size, 3)).astype(np.float32)
    visual += visual_signal * templates[labels][:, None]
    out[split] = {"audio": audio, "visual": visual.astype(np.float32), "label": labels}
  return out


@data.register("av_demo")
def av_demo(config, split: str) -> data.Dataset:
  opts = {k: config.get(k, v) for k, v in DEFAULTS.items()}
  if split not in SPLITS:
    raise ValueError(f"av_demo has splits {SPLITS}, not {split!r}.")
  arrays = make(**opts)[split]
  spec = {"audio": ((opts["freq"], opts["time"], 1), np.float32),
          "visual": ((opts["frames"], opts["size"], opts["size"], 3), np.float32),
          "label": ((), np.int32)}
  return data.Dataset(source=data.ArraySource(arrays), element_spec=spec,
                      info={"num_classes": opts["num_classes"]})

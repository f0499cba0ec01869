"""Prepare CREMA-D / Kinetics-Sounds into ArrayRecord files (read by ml_pipelines/data/crema_d.py).

    python -m ml_pipelines.prep.av --dataset=crema_d --raw_dir=RAW --out_dir=data/crema_d
        [--train_list=train.csv --test_list=test.csv] [--frames=1] [--image_size=224]
    python -m ml_pipelines.prep.av --dataset=kinetics_sounds --raw_dir=RAW --out_dir=data/kinetics_sounds

Raw layouts (those of the OGM-GE preprocessing):
- crema_d: RAW/AudioWAV/<clip>.wav (16 kHz) and RAW/<frames_dir, default "frames">/<clip>/*.jpg
  (frames extracted at 1 fps). Label = emotion code of the clip name `<actor>_<sentence>_<EMO>_<lvl>`,
  NEU HAP SAD FEA DIS ANG -> 0..5 (OGM-GE dataset/CramedDataset.py). Splits: csv lists `clip,EMO`
  (the official data/CREMAD/{train,test}.csv) or, without them, a deterministic 9:1 split.
- kinetics_sounds: RAW/audio/<clip>.wav, RAW/frames/<clip>/*.jpg, RAW/{train,test}.csv `clip,class`;
  class names sorted give the labels (31 classes).

Audio (OGM-GE CramedDataset): resample to 22,050 Hz, tile to 3 s, clip to [-1, 1],
`log(|STFT(n_fft=512, hop=353, hann, centred with zero padding)| + 1e-7)` -> [257, 188, 1]
(librosa.stft's defaults, written with numpy/scipy). Kinetics-Sounds uses the same code with
`--seconds=10 --sample_rate=16000 --hop=160` (about 257 x 1000, the AMSS input). Frames: `--frames`
evenly spaced jpgs of the clip, resized to `image_size` squared, uint8.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os

import numpy as np

from ml_pipelines.data import records

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def load_wav(path: str, sample_rate: int) -> np.ndarray:
  """Mono float waveform in [-1, 1] at `sample_rate` (polyphase resampling)."""
  from math import gcd

  from scipy.io import wavfile
  from scipy.signal import resample_poly
  rate, x = wavfile.read(path)
  if x.dtype.kind == "i":
    x = x.astype(np.float32) / np.iinfo(x.dtype).max
  x = x.astype(np.float32)
  if x.ndim > 1:
    x = x.mean(1)
  if rate != sample_rate:
    g = gcd(rate, sample_rate)
    x = resample_poly(x, sample_rate // g, rate // g).astype(np.float32)
  return x


def spectrogram(x: np.ndarray, sample_rate: int = 22050, seconds: float = 3.0, n_fft: int = 512,
                hop: int = 353) -> np.ndarray:
  """[n_fft/2+1, 1 + n/hop, 1] = log(|STFT| + 1e-7) of x tiled/cut to `seconds` (OGM-GE)."""
  n = int(sample_rate * seconds)
  x = np.tile(x, int(np.ceil(n / max(len(x), 1))) + 1)[:n].astype(np.float64)
  x = np.clip(x, -1.0, 1.0)
  x = np.pad(x, n_fft // 2)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic hann
  frames = 1 + (len(x) - n_fft) // hop
  idx = np.arange(n_fft)[None] + hop * np.arange(frames)[:, None]
  spec = np.abs(np.fft.rfft(x[idx] * window, axis=1)).T
  return np.log(spec + 1e-7).astype(np.float32)[..., None]


def load_frames(frame_dir: str, count: int, size: int) -> np.ndarray:
  """[count, size, size, 3] uint8: `count` evenly spaced jpgs of the clip (the last repeated)."""
  from PIL import Image
  files = sorted(glob.glob(os.path.join(frame_dir, "*.jpg")))
  if not files:
    raise FileNotFoundError(f"no frames under {frame_dir}")
  pick = np.linspace(0, len(files) - 1, count).round().astype(int)
  return np.stack([np.asarray(Image.open(files[i]).convert("RGB").resize((size, size),
                                                                           Image.BILINEAR))
                   for i in pick]).astype(np.uint8)


def read_list(path: str) -> list[tuple[str, str]]:
  with open(path) as f:
    return [(r[0], r[1]) for r in csv.reader(f) if r]


def crema_d_splits(raw_dir, train_list=None, test_list=None):
  if train_list and test_list:
    return {"train": read_list(train_list), "test": read_list(test_list)}
  clips = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(raw_dir, "AudioWAV", "*.wav")))
  order = np.random.default_rng(0).permutation(len(clips))
  cut = max(1, int(round(0.9 * len(clips))))
  rows = [(c, c.split("_")[2]) for c in clips]
  return {"train": [rows[i] for i in sorted(order[:cut])],
          "test": [rows[i] for i in sorted(order[cut:])]}


def prepare(dataset: str, raw_dir: str, out_dir: str, *, train_list=None, test_list=None,
            frames_dir="frames", frames: int | None = None, image_size: int = 224,
            seconds: float | None = None, sample_rate: int | None = None, hop: int | None = None,
            num_shards: int = 1) -> dict[str, int]:
  """Writes `<out_dir>/{train,test}.array_record-*`; returns the example count per split."""
  if dataset == "crema_d":
    splits = crema_d_splits(raw_dir, train_list, test_list)
    label_of = {e: i for i, e in enumerate(EMOTIONS)}
    audio_dir = os.path.join(raw_dir, "AudioWAV")
    frames, seconds = frames or 1, seconds or 3.0
    sample_rate, hop = sample_rate or 22050, hop or 353
  elif dataset == "kinetics_sounds":
    splits = {s: read_list(os.path.join(raw_dir, f"{s}.csv")) for s in ("train", "test")}
    names = sorted({c for rows in splits.values() for _, c in rows})
    label_of = {c: i for i, c in enumerate(names)}
    audio_dir = os.path.join(raw_dir, "audio")
    frames, seconds = frames or 3, seconds or 10.0
    sample_rate, hop = sample_rate or 16000, hop or 160
  else:
    raise ValueError(f"unknown dataset {dataset!r}: crema_d or kinetics_sounds")
  counts = {}
  for split, rows in splits.items():
    def examples(rows=rows):
      for clip, lab in rows:
        wav = load_wav(os.path.join(audio_dir, clip + ".wav"), sample_rate)
        yield {"audio": spectrogram(wav, sample_rate, seconds, 512, hop),
               "visual": load_frames(os.path.join(raw_dir, frames_dir, clip), frames, image_size),
               "label": np.int32(label_of[lab])}
    records.write(out_dir, split, examples(), num_shards)
    counts[split] = len(rows)
  return counts


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", required=True, choices=("crema_d", "kinetics_sounds"))
  p.add_argument("--raw_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--train_list")
  p.add_argument("--test_list")
  p.add_argument("--frames_dir", default="frames")
  p.add_argument("--frames", type=int)
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--seconds", type=float)
  p.add_argument("--sample_rate", type=int)
  p.add_argument("--hop", type=int)
  p.add_argument("--num_shards", type=int, default=1)
  a = p.parse_args(argv)
  counts = prepare(a.dataset, a.raw_dir, a.out_dir, train_list=a.train_list,
                   test_list=a.test_list, frames_dir=a.frames_dir, frames=a.frames,
                   image_size=a.image_size, seconds=a.seconds, sample_rate=a.sample_rate,
                   hop=a.hop, num_shards=a.num_shards)
  print(f"wrote {counts} to {a.out_dir}")


if __name__ == "__main__":
  main()

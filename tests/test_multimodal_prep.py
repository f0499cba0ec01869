"""prep_av: spectrogram recipe vs a brute-force DFT, a fake CREMA-D raw tree -> ArrayRecord -> the
examples the crema_d builder reads."""
import os

import numpy as np
import pytest

from ml_pipelines.trainer import config as config_lib
from ml_pipelines import data
from ml_pipelines.prep import av as prep_av
def test_spectrogram_shape_and_brute_force_dft():
  x = np.random.default_rng(0).uniform(-0.5, 0.5, 22050).astype(np.float32)  # 1 s, tiled to 3 s
  s = prep_av.spectrogram(x)
  assert s.shape == (257, 188, 1)
  tiled = np.tile(x, 3)
  padded = np.pad(tiled.astype(np.float64), 256)
  n = np.arange(512)
  win = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)
  for frame, k in ((0, 0), (5, 17), (187, 256), (100, 128)):
    seg = padded[frame * 353: frame * 353 + 512] * win
    ref = np.log(abs(np.sum(seg * np.exp(-2j * np.pi * k * n / 512))) + 1e-7)
    np.testing.assert_allclose(s[k, frame, 0], ref, rtol=1e-4, atol=1e-4)


def _fake_crema(root, n=12):
  from PIL import Image
  from scipy.io import wavfile
  os.makedirs(root / "AudioWAV")
  r = np.random.default_rng(0)
  clips = []
  for i in range(n):
    clip = f"10{i:02d}_DFA_{prep_av.EMOTIONS[i % 6]}_XX"
    wavfile.write(root / "AudioWAV" / f"{clip}.wav", 16000,
                  (r.uniform(-0.3, 0.3, 8000) * 32767).astype(np.int16))
    os.makedirs(root / "frames" / clip)
    for j in range(2):
      Image.fromarray(r.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
          root / "frames" / clip / f"{j:04d}.jpg")
    clips.append(clip)
  return clips


def test_crema_d_prep_labels_and_spectrograms(tmp_path):
  clips = _fake_crema(tmp_path / "raw")
  with open(tmp_path / "train.csv", "w") as f:
    f.writelines(f"{c},{c.split('_')[2]}\n" for c in clips[:10])
  with open(tmp_path / "test.csv", "w") as f:
    f.writelines(f"{c},{c.split('_')[2]}\n" for c in clips[10:])
  out = tmp_path / "records"
  counts = prep_av.prepare("crema_d", str(tmp_path / "raw"), str(out),
                           train_list=str(tmp_path / "train.csv"),
                           test_list=str(tmp_path / "test.csv"), image_size=16)
  assert counts == {"train": 10, "test": 2}
  c = config_lib.load("configs/multimodal/vanilla.py:cremad,concat")
  c.data.data_dir = str(out)
  ds = data.get("crema_d")(c.data, "test")
  ex = ds.eval_preprocess(ds.source[1])
  assert ex["audio"].shape == (257, 188, 1) and ex["visual"].shape == (1, 16, 16, 3)
  assert int(ex["label"]) == prep_av.EMOTIONS.index(clips[11].split("_")[2])
  wav = prep_av.load_wav(str(tmp_path / "raw" / "AudioWAV" / f"{clips[11]}.wav"), 22050)
  np.testing.assert_allclose(ex["audio"], prep_av.spectrogram(wav), atol=1e-5)
  # training on these records: tests/test_multimodal_train.py (every method, cremad)


def test_missing_records_name_the_prepare_command(tmp_path):
  c = config_lib.load("configs/multimodal/vanilla.py:kinetics_sounds,concat")
  c.data.data_dir = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match=r"prep\.av --dataset=kinetics_sounds"):
    data.get("kinetics_sounds")(c.data, "train")

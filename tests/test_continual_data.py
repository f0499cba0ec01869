"""Manual-directory builders of the continual / imbalance configs on tiny fakes in the real layouts
(Skin8 list files + ISIC 2019 images, Path16 subsets, class folders)."""
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from ml_pipelines.data import continual_medical as med


def _png(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(path)


def _cfg(root, **kw):
  return ml_collections.ConfigDict(dict(data_dir=str(root), image_size=8, **kw))


def test_skin8_reads_the_official_list_files(tmp_path):
  rows = [("ISIC_0000000.jpg", 3), ("sub/ISIC_0000001.jpg", 0)]
  for i, (rel, _) in enumerate(rows):
    _png(str(tmp_path / "ISIC2019" / rel), 40 * i)
  (tmp_path / "skin8_train_500.txt").write_text("".join(f"{r} {l}\n" for r, l in rows))
  ds = med.skin8(_cfg(tmp_path), "train")
  assert len(ds.source) == 2 and ds.source.arrays["label"].tolist() == [3, 0]
  ex = ds.eval_preprocess(ds.source[1])
  assert ex["image"].shape == (8, 8, 3)
  mean, std = med.SKIN8_MEAN_STD
  np.testing.assert_allclose(ex["image"][0, 0], (40 / 255 - np.asarray(mean)) / np.asarray(std),
                             rtol=1e-5)
  with pytest.raises(FileNotFoundError, match="skin8_test_500.txt.*GiantJun/CL_Pytorch"):
    med.skin8(_cfg(tmp_path), "test")


def test_path16_numbers_classes_subset_by_subset(tmp_path):
  for sub in med.PATH16_SUBSETS:
    for cls in ("b_class", "a_class"):
      _png(str(tmp_path / sub / "train" / cls / "x.png"), 7)
  ds = med.path16(_cfg(tmp_path), "train")
  assert ds.info["num_classes"] == 14
  assert ds.source.arrays["label"].tolist() == list(range(14))
  assert ds.source.paths[0].endswith(os.path.join("MHIST", "train", "a_class", "x.png"))
  with pytest.raises(FileNotFoundError, match="Path16 subset 'MHIST'.*does not exist"):
    med.path16(_cfg(tmp_path), "test")


def test_image_folder_layout(tmp_path):
  for cls, n in (("NORMAL", 2), ("PNEUMONIA", 3)):
    for i in range(n):
      _png(str(tmp_path / "train" / cls / f"{i}.jpeg"), 10 * i)
  ds = med.image_folder(_cfg(tmp_path), "train")
  assert ds.source.arrays["label"].tolist() == [0, 0, 1, 1, 1]
  ex = ds.preprocess(ds.source[4], np.random.default_rng(0))
  assert ex["image"].shape == (8, 8, 3) and ex["image"].dtype == np.float32


def test_torchvision_resnet_loads_into_the_acl_backbone():
  import warnings
  import models
  from models import convert
  from models.acl import TorchResNetBackbone
  rn = models.build({"name": "resnet18", "width": 8, "num_classes": 5}, seed=3)
  sd = convert.to_state_dict(rn, convert.TorchResNet())
  assert "layer4.1.bn2.running_var" in sd and "fc.weight" in sd
  net = models.build({"name": "acl_net", "backbone": {"name": "resnet18", "width": 8},
                      "task_sizes": (2, 2), "hooks": (0, 3)}, seed=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    convert.load_into(net, sd, strict=False, converter=TorchResNetBackbone())
  np.testing.assert_array_equal(np.asarray(net.backbone.layer4[1].bn2.var.value),
                                np.asarray(rn.layer4[1].bn2.var.value))
  np.testing.assert_array_equal(np.asarray(net.backbone.conv1.kernel.value),
                                np.asarray(rn.conv1.kernel.value))
  # Adapter channels at ResNet-18's hooked stage inputs: 64 and 256 at width 64 (here 8 and 32).
  assert net.adapters[0][0].conv.in_features == 8 and net.adapters[1][0].conv.in_features == 32

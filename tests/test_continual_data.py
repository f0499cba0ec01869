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


def test_imagenet100_subset_keeps_the_listed_classes_in_list_order(tmp_path):
  from ml_pipelines import data
  from ml_pipelines.data import continual as protocol
  from ml_pipelines.data import continual_imagenet as inet
  from ml_pipelines.trainer import config as config_lib
  c = config_lib.load("configs/continual/adaptive_kd.py:imagenet100")
  wnids = c.data.classes
  # PODNet's imagenet_split/val_100.txt: the first 100 ILSVRC2012 wnids, in order; its class
  # order (options/data/imagenet100_1order.yaml) begins 68, 56, 78, 8, 23.
  assert len(set(wnids)) == 100 and list(wnids) == sorted(wnids)
  assert (wnids[0], wnids[2], wnids[99]) == ("n01440764", "n01484850", "n01855672")
  assert protocol.class_order(100, c.task.class_order)[:5].tolist() == [68, 56, 78, 8, 23]
  assert protocol.task_sizes(100, c.task.base_classes, c.task.increment) == [50] + [10] * 5
  for i, wnid in enumerate(wnids):  # the real layout: train/<wnid>/<wnid>_<n>.JPEG
    _png(str(tmp_path / "train" / wnid / f"{wnid}_{i}.JPEG"), i)
  _png(str(tmp_path / "train" / "n15075141" / "n15075141_1.JPEG"), 0)  # class 999: not listed
  c.data.data_dir = str(tmp_path)
  ds = data.get(c.data.name)(c.data, "train")
  assert len(ds.source) == 100 and ds.info["num_classes"] == 100
  assert ds.source.arrays["label"].tolist() == list(range(100))
  assert ds.eval_preprocess(ds.source[3])["image"].shape == (224, 224, 3)
  # A shuffled short list: labels follow the list, the other folders are ignored.
  for wnid, n in (("n01443537", 2), ("n01440764", 1)):
    for k in range(n):
      _png(str(tmp_path / "val" / wnid / f"ILSVRC2012_val_{wnid}{k}.JPEG"), 9)
  files = inet.subset_files(str(tmp_path), "val", ["n01443537", "n01440764"])
  assert files.arrays["label"].tolist() == [0, 0, 1]
  assert all("/n01443537/" in p for p in files.paths[:2]) and "/n01440764/" in files.paths[2]
  with pytest.raises(FileNotFoundError, match=r"1 of the 2 listed classes have no folder.*n014848"):
    inet.subset_files(str(tmp_path), "val", ["n01443537", "n01484850"])
  with pytest.raises(ValueError, match=r"repeats \['n01440764'\]"):
    inet.subset_files(str(tmp_path), "val", ["n01440764", "n01440764"])
  with pytest.raises(FileNotFoundError, match="ImageNet split 'test'.*continual_imagenet.py"):
    inet.subset_files(str(tmp_path), "test", ["n01440764"])

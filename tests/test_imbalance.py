"""Two-stage metric recipe: metric losses against independent NumPy versions, the long-tailed
digits profile, a tiny two-stage run (cRT re-initialises and trains only the classifier), and the
ISIC 2018 Task 3 CSV layout on a tiny fake."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses import metric_learning
from ml_pipelines import train
from ml_pipelines.data import continual_digits
from ml_pipelines.trainer import config as config_lib


def _supcon_np(z, y, tau):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  losses = []
  for i in range(len(z)):
    others = [a for a in range(len(z)) if a != i]
    pos = [p for p in others if y[p] == y[i]]
    if not pos:
      continue
    denom = sum(np.exp(z[i] @ z[a] / tau) for a in others)
    losses.append(-np.mean([np.log(np.exp(z[i] @ z[p] / tau) / denom) for p in pos]))
  return np.mean(losses)


def _center_triplet_np(z, y, num_classes, margin):
  centres = {c: z[y == c].mean(0) for c in range(num_classes) if (y == c).any()}
  out = []
  for i in range(len(z)):
    pos = np.linalg.norm(z[i] - centres[y[i]])
    negs = [np.linalg.norm(z[i] - centres[c]) for c in centres if c != y[i]]
    out.append(max(0.0, margin + pos - min(negs)) if negs else 0.0)
  return np.mean(out)


def test_metric_losses_match_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(10, 6)).astype(np.float32)
  y = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])  # class 2 has no positive
  np.testing.assert_allclose(metric_learning.supervised_contrastive(jnp.asarray(z), jnp.asarray(y),
                                                                    0.1),
                             _supcon_np(z, y, 0.1), rtol=1e-5)
  np.testing.assert_allclose(metric_learning.class_center_triplet(jnp.asarray(z), jnp.asarray(y),
                                                                  6, 0.3),
                             _center_triplet_np(z, y, 6, 0.3), rtol=1e-5)
  # The centres are constants: the gradient flows through the anchors only.
  g = jax.grad(lambda f: metric_learning.class_center_triplet(f, jnp.asarray(y), 6, 5.0))(
      jnp.asarray(z))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_long_tailed_profile():
  counts = continual_digits.long_tailed_counts([150, 140, 145, 150, 150, 150, 150, 150, 150, 150],
                                               20.0)
  assert counts[0] == 140 and counts[-1] == 7  # 140 / 20
  np.testing.assert_allclose(counts, np.round(140 * 20.0 ** (-np.arange(10) / 9)))
  ds = continual_digits.digits_long_tailed({"imbalance_ratio": 20.0}, "train")
  assert np.bincount(ds.source.arrays["label"]).tolist() == continual_digits.long_tailed_counts(
      np.bincount(continual_digits._arrays("train")["label"]), 20.0).tolist()


def test_two_stage_crt_trains_only_the_reinitialised_classifier(tmp_path):
  c = config_lib.load("configs/imbalance/two_stage_metric.py:two_stage_supcon")
  c.model.backbone.width = 8
  c.stages = (dict(c.stages[0], steps=4), dict(c.stages[1], steps=3))
  c.total_steps = c.eval_every = c.checkpoint_every = 7
  c1 = config_lib.load("configs/imbalance/two_stage_metric.py:two_stage_supcon")
  c1.model.backbone.width = 8
  c1.stages, c1.total_steps = (dict(c1.stages[0], steps=4),), 4
  c1.eval_every = c1.checkpoint_every = 4
  after1 = train.Env.variables(train.train_and_evaluate(c1, str(tmp_path / "a"))["state"])[0]
  result = train.train_and_evaluate(c, str(tmp_path / "b"))
  after2 = train.Env.variables(result["state"])[0]
  flat1 = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
           jax.tree_util.tree_flatten_with_path(after1)[0]}
  flat2 = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
           jax.tree_util.tree_flatten_with_path(after2)[0]}
  for k in flat1:
    assert np.array_equal(flat1[k], flat2[k]) != k.startswith("['fc']"), k
  assert {"macro_f1", "tail_recall", "head_recall"} <= {k.split("/")[-1] for k in result}


def test_isic2018_task3_csv_layout_and_its_errors(tmp_path):
  from PIL import Image
  from ml_pipelines import data
  from ml_pipelines.data import continual_medical as med

  def write(split, rows, images=None):
    name = f"ISIC2018_Task3_{split}"
    (tmp_path / f"{name}_GroundTruth").mkdir(exist_ok=True)
    (tmp_path / f"{name}_Input").mkdir(exist_ok=True)
    text = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n" + "".join(
        f"{img}," + ",".join(f"{v:.1f}" for v in onehot) + "\n" for img, onehot in rows)
    (tmp_path / f"{name}_GroundTruth" / f"{name}_GroundTruth.csv").write_text(text)
    for img, _ in rows if images is None else images:
      Image.fromarray(np.full((5, 7, 3), 60, np.uint8)).save(
          tmp_path / f"{name}_Input" / f"{img}.jpg")

  eye = np.eye(7)
  write("Training", [("ISIC_0024306", eye[1]), ("ISIC_0024307", eye[6]),
                     ("ISIC_0024308", eye[3])])
  write("Validation", [("ISIC_0034321", eye[0])])
  c = config_lib.load("configs/imbalance/two_stage_metric.py:two_stage_triplet,isic2018")
  c.data.data_dir = str(tmp_path)
  train = data.get(c.data.name)(c.data, c.data.train_split)
  assert train.source.arrays["label"].tolist() == [1, 6, 3]  # NV, VASC, AKIEC
  assert train.source.paths[1].endswith("ISIC2018_Task3_Training_Input/ISIC_0024307.jpg")
  ex = train.eval_preprocess(train.source[0])
  assert ex["image"].shape == (224, 224, 3) and train.info["num_classes"] == 7
  val = data.get(c.data.name)(c.data, c.data.eval_split)
  assert val.source.arrays["label"].tolist() == [0]
  # The tail classes of the config are AKIEC, DF, VASC in the CSV's column order.
  assert [med.ISIC2018_CLASSES[i] for i in c.task.tail_classes] == ["AKIEC", "DF", "VASC"]
  with pytest.raises(FileNotFoundError, match="ISIC2018_Task3_Test_GroundTruth.csv' is missing"):
    med.isic2018_files(str(tmp_path), "test")
  write("Test", [("ISIC_1", eye[0] + eye[2])])
  with pytest.raises(ValueError, match=r"line 2 \(ISIC_1\): one-hot row with 2 ones"):
    med.isic2018_files(str(tmp_path), "test")
  write("Test", [("ISIC_1", eye[0]), ("ISIC_2", 0 * eye[0])])
  with pytest.raises(ValueError, match=r"line 3 \(ISIC_2\): one-hot row with 0 ones"):
    med.isic2018_files(str(tmp_path), "test")
  write("Test", [("ISIC_1", eye[0]), ("ISIC_3", eye[4])], images=[("ISIC_1", None)])
  with pytest.raises(FileNotFoundError, match=r"line 3: image .*ISIC_3.jpg' is missing"):
    med.isic2018_files(str(tmp_path), "test")

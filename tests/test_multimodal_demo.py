"""The imbalance demo's linear probe and table, on one short visual-only run (audio muted).

The muted audio encoder only ever sees zeros, so its features are one constant vector and the best a
probe can do is the train split's most frequent class: its test accuracy is that class's share of
the test labels, computed here from the labels alone. The trained visual encoder must beat chance.
"""
import numpy as np

from ml_pipelines import data
from ml_pipelines.jobs import multimodal_demo as demo
from ml_pipelines import train
def test_linear_probe_on_muted_and_trained_encoders(tmp_path):
  config = demo.config_for("visual_only", epochs=1, width=8, workdir=str(tmp_path))
  config.eval_batch_size = 200  # divides over the test session's 8 CPU devices
  result = train.train_and_evaluate(config, str(tmp_path / "visual_only"))
  probe = demo.probe_accuracies(config, result["state"])

  labels = {s: data.get(config.data.name)(config.data, s).source.arrays["label"]
            for s in (config.data.train_split, config.data.eval_split)}
  counts = np.bincount(labels[config.data.train_split])
  majority = np.flatnonzero(counts == counts.max())  # any of the tied most frequent classes
  shares = [np.mean(labels[config.data.eval_split] == c) for c in majority]
  assert min(abs(probe["audio"] - s) for s in shares) < 1e-9, (probe, shares)
  num_classes = len(counts)
  assert probe["visual"] > 1.0 / num_classes + 0.05, probe

  md = demo.table([("visual_only", result, probe, 1.0)])
  row = md.splitlines()[-1].strip("|").split("|")
  assert [c.strip() for c in row][4:6] == [f"{probe['audio']:.3f}", f"{probe['visual']:.3f}"]
  assert float(row[3]) == round(float(result["eval/visual_accuracy"]), 3)

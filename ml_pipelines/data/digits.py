"""scikit-learn's handwritten digits (1,797 8x8 images, 10 classes): the embedded default data.

It ships inside scikit-learn, so a new user trains on real images with no download. Splits are a
fixed 80/20 partition: "train" (1,437) and "test" (360).
"""
import numpy as np

from ml_pipelines import data
def _arrays(split: str) -> dict[str, np.ndarray]:
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))
  cut = int(0.8 * len(labels))
  rows = {"train": order[:cut], "test": order[cut:]}
  if split not in rows:
    raise ValueError(f"digits has splits 'train' and 'test', not {split!r}.")
  return {"image": images[rows[split]], "label": labels[rows[split]]}


@data.register("digits")
def digits(config, split: str) -> data.Dataset:
  del config
  return data.Dataset(source=data.ArraySource(_arrays(split)),
                      element_spec={"image": ((8, 8, 1), np.float32), "label": ((), np.int32)},
                      info={"num_classes": 10})

"""A small CNN for the reference task (embedded digits) and smoke tests."""
from flax import nnx
import jax.numpy as jnp

import models


class SmallCNN(nnx.Module):
  """conv3x3(w) - BN - ReLU - conv3x3(2w, stride 2) - BN - ReLU - global mean - dense(h) - dropout -
  dense(num_classes)."""

  def __init__(self, *, num_classes: int = 10, in_channels: int = 1, width: int = 32,
               hidden: int = 128, dropout: float = 0.1, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_channels, width, (3, 3), use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=2, use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(2 * width, momentum=0.9, rngs=rngs)
    self.fc1 = nnx.Linear(2 * width, hidden, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = nnx.relu(self.bn2(self.conv2(x)))
    x = jnp.mean(x, axis=(1, 2))
    return self.fc2(self.dropout(nnx.relu(self.fc1(x))))


models.register("small_cnn", SmallCNN)

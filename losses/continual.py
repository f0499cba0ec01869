"""Continual-learning losses (pure functions of arrays).

- ``kd_loss`` (Hinton et al. 2015; LwF, Li and Hoiem 2017, Eq. 3; iCaRL as implemented in PyCIL and
  GiantJun/CL_Pytorch ``_KD_loss``): ``-sum_c softmax(t / T)_c log softmax(s / T)_c`` per example,
  without the T^2 factor (as those codes).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
            ) -> jax.Array:
  """[B] soft cross-entropy of the student against the teacher at `temperature`."""
  soft = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  return -jnp.sum(soft * log_p, axis=-1)

"""The T-Memory Bank against the official `TMemoryBank` run with scripted random choices (fixture),
and the properties of its own draws."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from ml_pipelines.data import segmentation_bank as sb

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "aucseg", "bank.npz")


def test_bank_matches_official_with_scripted_choices():
  f = np.load(FIXTURE)
  cfg = sb.BankConfig(tail=tuple(f["tail"].tolist()), image_shape=f["images"].shape[1:],
                      memory_size=int(f["memory_size"]), p_sample=float(f["p_sample"]),
                      p_resize=float(f["p_resize"]))
  bank = sb.init(cfg)
  step = jax.jit(lambda bank, image, label, ch: sb.apply(cfg, bank, image, label, ch))
  for b in range(len(f["images"])):
    choices = sb.Choices(*(jnp.asarray(f[k][b]) for k in ("store_slot", "paste_class",
                                                          "paste_slot", "paste_y", "paste_x")))
    bank, image, label = step(bank, jnp.asarray(f["images"][b]), jnp.asarray(f["labels"][b]),
                              choices)
    np.testing.assert_array_equal(label, f["out_labels"][b], err_msg=f"image {b}")
    np.testing.assert_allclose(image, f["out_images"][b], atol=1e-5, err_msg=f"image {b}")
  assert (f["out_labels"] != f["labels"]).any()  # the fixture pastes something


def test_draws_follow_the_official_rules():
  """ceil(p_sample * #absent) distinct absent classes; slots among the filled ones; store into the
  next free slot until full; offsets keep the pasted patch inside the image."""
  cfg = sb.BankConfig(tail=(1, 2, 3, 4, 5), image_shape=(10, 10, 3), memory_size=3, p_sample=0.5,
                      p_resize=0.4)
  present = jnp.array([True, False, False, True, False])
  count = jnp.array([3, 0, 2, 1, 1], jnp.int32)
  draw = jax.jit(lambda k: sb.draw_choices(cfg, k, present, count))
  for seed in range(20):
    ch = jax.tree.map(np.asarray, draw(jax.random.key(seed)))
    chosen = ch.paste_class[ch.paste_class >= 0]
    assert len(chosen) == 2 and len(set(chosen)) == 2 and set(chosen) <= {1, 2, 4}
    for c, s in zip(ch.paste_class, ch.paste_slot):
      if c >= 0:
        assert (s == -1) if count[c] == 0 else (0 <= s < count[c])
    assert ch.store_slot[3] == 1 and 0 <= ch.store_slot[0] < 3
    assert (ch.store_slot[[1, 2, 4]] == -1).all()
    assert (0 <= ch.paste_y).all() and (ch.paste_y <= 6).all() and (ch.paste_x <= 6).all()
  a, b = draw(jax.random.key(3)), draw(jax.random.key(3))
  assert all(np.array_equal(x, y) for x, y in zip(a, b))

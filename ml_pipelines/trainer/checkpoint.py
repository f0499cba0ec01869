"""One checkpoint path: the whole train state, the data-iterator state and the config, via orbax.

- Async saves; keeps the last `keep_checkpoints` and every `keep_period`-th step.
- `restore_latest` restores onto *any* mesh: it is given abstract arrays carrying the new shardings,
  so a run saved on 8 devices continues on 4 or on 1.
- A latest checkpoint that cannot be read (truncated, corrupt) is reported by name, moved aside to
  `<workdir>/corrupt_checkpoints/`, and the previous good one is used.
- A checkpoint whose config differs in a key that changes the meaning of the state
  (`config.COMPATIBILITY_KEYS`) is refused with the mismatching keys named.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from ml_pipelines.trainer import config as config_lib
def load_latest_arrays(workdir: str) -> tuple[int, Any]:
  """(step, state) of the newest checkpoint in another run's workdir, as host NumPy arrays.

  For reading a finished run (teachers, initialisation), not for resuming: no shardings, no checks.
  """
  import numpy as np
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  steps = sorted((int(s) for s in os.listdir(directory) if s.isdigit()), reverse=True) \
      if os.path.isdir(directory) else []
  if not steps:
    raise FileNotFoundError(f"No checkpoint in {directory}; train that run first.")
  path = os.path.join(directory, str(steps[0]), "state")
  checkpointer = ocp.StandardCheckpointer()
  meta = checkpointer.metadata(path)
  tree = getattr(meta, "item_metadata", meta)
  target = jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype), tree)
  return steps[0], checkpointer.restore(path, target)


@contextlib.contextmanager
def _quiet_reads(failed: list):
  """Silences what a failed read of a corrupt checkpoint prints besides our one warning.

  When one array read fails, orbax closes its event loop while tensorstore's other reads are in
  flight; each of them then reports `RuntimeError('Event loop is closed')` through
  `sys.unraisablehook` (hundreds of tracebacks), for a while after the restore has returned, and
  orbax logs warnings through absl. For the probe, those reports are dropped (anything else goes
  to the previous hook); after a failed read (`failed` non-empty) the probe ends when the late
  reports have stopped (1 s without one, at most 10 s).
  """
  previous_hook, dropped = sys.unraisablehook, []

  def hook(report):
    if isinstance(report.exc_value, RuntimeError) and "Event loop is closed" in str(
        report.exc_value):
      dropped.append(time.monotonic())
    else:
      previous_hook(report)

  loggers = [logging.getLogger(n) for n in ("absl", "orbax", "tensorstore", "asyncio")]
  levels = [log.level for log in loggers]
  sys.unraisablehook = hook
  for log in loggers:
    log.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    start = time.monotonic()
    while failed and time.monotonic() < min(start + 10, max([start, *dropped[-1:]]) + 1.0):
      time.sleep(0.05)
    sys.unraisablehook = previous_hook
    for log, level in zip(loggers, levels):
      log.setLevel(level)


class IncompatibleCheckpointError(ValueError):
  pass


@dataclasses.dataclass
class Restored:
  step: int
  state: Any
  data_state: dict


class Checkpointer:

  def __init__(self, workdir: str, keep: int = 3, keep_period: int = 0, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.corrupt_dir = os.path.abspath(os.path.join(workdir, "corrupt_checkpoints"))
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_period or None,
        enable_async_checkpointing=async_save, create=True,
        cleanup_tmp_directories=True)  # an unfinished save (a killed run) leaves a tmp directory
    self._open()

  def _open(self):
    self.manager = ocp.CheckpointManager(self.directory, options=self._options,
                                         item_names=("state", "data", "config"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict, config) -> None:
    """Starts an asynchronous save of `step`; a step already saved is left as it is."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        config=ocp.args.JsonSave(config.to_dict())))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def restore_latest(self, abstract_state: Any, config) -> Restored | None:
    """Newest readable checkpoint restored into `abstract_state`'s shapes and shardings, or None.

    `abstract_state` may be a function of the checkpoint's step (a multi-stage run's state has the
    structure of the stage it was saved in)."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      failed = []
      with _quiet_reads(failed):
        try:
          saved_config = self.manager.restore(step, args=ocp.args.Composite(
              config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 -- any failure to read means this step is unusable
          failed.append(e)
      if failed:
        self._set_aside(step, failed[0])
        continue
      mismatch = config_lib.incompatible_keys(saved_config, config)
      if mismatch:
        flat_saved = config_lib.flatten(saved_config)
        flat_now = config_lib.flatten(config.to_dict())
        details = ", ".join(f"{k}: checkpoint {flat_saved.get(k)!r} vs config {flat_now.get(k)!r}"
                            for k in mismatch)
        raise IncompatibleCheckpointError(
            f"The checkpoint at step {step} in {self.directory} was written by an incompatible "
            f"config; mismatching keys: {details}. Use a new --workdir or restore the old "
            f"values." + (" (total_steps stretches this run's learning-rate schedule: training "
                          "longer on it would change the steps already taken.)"
                          if "total_steps" in mismatch else ""))
      with _quiet_reads(failed):
        try:
          out = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(
                  abstract_state(step) if callable(abstract_state) else abstract_state),
              data=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001
          failed.append(e)
      if failed:
        self._set_aside(step, failed[0])
        continue
      return Restored(step=step, state=out["state"], data_state=out["data"])
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    path = os.path.join(self.directory, str(step))
    first_line = str(error).splitlines()[0][:200] if str(error) else ""
    print(f"WARNING: checkpoint {path} is unreadable ({type(error).__name__}: {first_line}); "
          f"moved to {self.corrupt_dir}, using the previous one.", flush=True)
    if jax.process_index() == 0 and os.path.exists(path):
      os.makedirs(self.corrupt_dir, exist_ok=True)
      shutil.move(path, os.path.join(self.corrupt_dir, f"{step}"))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"set_aside_{step}")
    self.manager.close()
    self._open()

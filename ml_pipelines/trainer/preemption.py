"""A clean stop on SIGINT (Ctrl-C) or SIGTERM (preemption on TPU VMs, SLURM, Kubernetes).

The trainer installs a `StopOnSignal` around its loop and asks `requested(step)` after each step:

- first signal: a flag is set; the current step finishes, the trainer writes a checkpoint of that
  step, waits for it, prints "stopped at step N; run the same command to resume" and exits with
  `EXIT_RESUMABLE` (75, EX_TEMPFAIL of sysexits.h: "temporary failure, try again"), so a job
  script can tell a resumable stop (75) from success (0) and from a crash (1).
- second signal: the process exits at once with the shell's killed-by-signal code 128 + signum
  (130 for SIGINT, 143 for SIGTERM). The newest finished checkpoint is intact: orbax writes each
  checkpoint into a temporary directory and renames it only when complete; the temporary directory
  of an unfinished save is removed when the run is started again.

With several processes, a signal may reach only some of them (Ctrl-C on one host), and a checkpoint
is a collective: the flag is agreed across processes every `sync_every` steps, and all of them stop
at the same step.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np

EXIT_RESUMABLE = 75
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Preempted(SystemExit):
  """Raised after the stop checkpoint is written; exits a command line with EXIT_RESUMABLE."""

  def __init__(self, step: int):
    super().__init__(EXIT_RESUMABLE)
    self.step = step


class StopOnSignal:
  """Turns the first SIGINT / SIGTERM into a request to stop after the current step.

  Use as `stop = StopOnSignal(...).install()` ... `stop.uninstall()`, or as a context manager.
  Outside the main thread (where Python cannot set signal handlers) it installs nothing and never
  requests a stop.
  """

  def __init__(self, sync_every: int = 1):
    self.sync_every = max(int(sync_every), 1)
    self.signum: int | None = None
    self._previous: dict[int, object] = {}

  _installed: StopOnSignal | None = None  # one at a time; a loop left by an exception is replaced

  def install(self) -> StopOnSignal:
    if threading.current_thread() is threading.main_thread():
      if StopOnSignal._installed is not None:
        StopOnSignal._installed.uninstall()
      for s in _SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
      StopOnSignal._installed = self
    return self

  def uninstall(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}
    if StopOnSignal._installed is self:
      StopOnSignal._installed = None

  def __enter__(self) -> StopOnSignal:
    return self.install()

  def __exit__(self, *exc) -> None:
    self.uninstall()

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.signum is None:
      self.signum = signum
      print(f"\n{name} received: finishing the current step and writing a checkpoint "
            f"(send it again to exit at once).", file=sys.stderr, flush=True)
      return
    print(f"\nSecond {name}: exiting now without a checkpoint; the newest finished checkpoint "
          f"is kept.", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum)

  def requested(self, step: int) -> bool:
    """Whether to stop after `step`; with several processes, the same answer on each of them."""
    import jax
    if jax.process_count() == 1:
      return self.signum is not None
    if step % self.sync_every:
      return False
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(self.signum is not None))
    return bool(np.any(flags))

  def exit(self, step: int, checkpoint_dir: str) -> None:
    """Prints how to resume and raises `Preempted` (exit code EXIT_RESUMABLE)."""
    self.uninstall()
    print(f"stopped at step {step} (checkpoint in {checkpoint_dir}); run the same command to "
          f"resume.", flush=True)
    raise Preempted(step)

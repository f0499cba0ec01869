"""Where a run's numbers go: TensorBoard events, a JSONL log, a progress display, a PNG of curves.

Only process 0 writes. On a terminal the progress is a tqdm bar with steps/s and ETA; otherwise
(CI, cluster logs) a plain line every `log_every` steps.

After a resume from step S the log agrees with the state: rows after S (written by the interrupted
run past its last checkpoint) are dropped from `metrics.jsonl` and purged from TensorBoard, and a
row written again at a step (the final evaluation of a finished run started again) replaces the
earlier one.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax


class MetricsWriter:

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0):
    self.workdir = workdir
    self.active = jax.process_index() == 0
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self.tb_dir = os.path.join(workdir, "tensorboard")
    self.plot_path = os.path.join(workdir, "curves.png")
    self.total_steps = total_steps
    self._bar = None
    self._tb = None
    self._t0, self._s0 = time.time(), start_step
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._resumed_at = start_step
    if start_step:
      self._rewrite([r for r in self.history() if r["step"] <= start_step])
    from tensorboardX import SummaryWriter
    # purge_step hides the interrupted run's events at steps > start_step.
    self._tb = SummaryWriter(self.tb_dir, purge_step=start_step + 1 if start_step else None)
    if sys.stderr.isatty():
      from tqdm import tqdm
      self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    if step <= self._resumed_at:  # a row of these metrics at this step may be there already
      self._rewrite([r for r in self.history()
                     if r["step"] != step or not set(r) <= set(record)])
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in record.items():
      if k != "step":
        self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def progress(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    rate = (step - self._s0) / max(time.time() - self._t0, 1e-9)
    shown = {k.removeprefix("train/").replace("/", "_"): f"{float(v):.4g}"
             for k, v in metrics.items() if "loss" in k or "acc" in k}
    if self._bar is not None:
      self._bar.n = step
      self._bar.set_postfix(shown, refresh=True)
    else:
      eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
      fields = " ".join(f"{k}={v}" for k, v in shown.items())
      print(f"step {step}/{self.total_steps}  {rate:.2f} steps/s  eta {eta:.0f}s  {fields}",
            flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()

  def _rewrite(self, records: list[dict]) -> None:
    tmp = self.jsonl_path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, self.jsonl_path)

  def history(self) -> list[dict]:
    if not os.path.exists(self.jsonl_path):
      return []
    with open(self.jsonl_path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def plot(self) -> str | None:
    """Training and evaluation curves, one panel per metric name (train/x and eval/x share one),
    in a grid of up to four columns, saved as PNG."""
    if not self.active:
      return None
    records = self.history()
    names = sorted({k for r in records for k in r if k != "step"})
    if not names:
      return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict[str, list[str]] = {}
    for n in names:
      groups.setdefault(n.split("/")[-1], []).append(n)
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, (metric, members) in zip(axes.flat, sorted(groups.items())):
      for n in members:
        pts = [(r["step"], r[n]) for r in records if n in r]
        few = len(pts) < 30
        split = n.split("/")[0] if "/" in n else n
        ax.plot(*zip(*pts), marker="o" if few else None, markersize=3.5 if few else None,
                label=split, color={"train": "C0", "eval": "C1"}.get(split))
      ax.set_title(panel_title(metric), fontsize=9)
      ax.set_xlabel("step", fontsize=8)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
      ax.axis("off")
    fig.tight_layout()
    fig.savefig(self.plot_path, dpi=100)
    plt.close(fig)
    return self.plot_path


# Panel titles with units for the metric names the tasks log; others are spelled out from the name.
TITLES = {
    "loss": "loss (cross-entropy, nats)",
    "accuracy": "accuracy (fraction correct)",
    "learning_rate": "learning rate",
    "o": "estimator o (1 = STE, larger = closer to sign)",
    "estimating_error": "ReSTE estimating error",
    "gradient_stability": "ReSTE gradient stability",
    "stage_modality": "MIE stage (0 audio, 1 visual)",
    "umt_distill": "UMT distillation loss",
    "hash_loss": "hashing loss",
    "policy_loss": "MCH policy loss",
}


def panel_title(metric: str) -> str:
  """'audio_accuracy' -> 'audio accuracy (fraction correct)', 'ema_loss' -> 'EMA loss (...)'."""
  if metric in TITLES:
    return TITLES[metric]
  prefix, _, base = metric.partition("_")
  if base in TITLES:
    return f"{'EMA' if prefix == 'ema' else prefix} {TITLES[base]}"
  return metric.replace("_", " ")

"""Audio-visual imbalance demo on the synthetic `av_demo` set (no download, CPU): trains a visual-only
and an audio-only reference, vanilla joint training and each balancing method through the trainer
(UMT distils from the two reference runs, so they come first), prints one table
(method | fused acc | audio acc | visual acc | audio probe | visual probe), writes it as markdown and
a PNG of the per-modality eval accuracy curves.

"audio acc" / "visual acc" are the model's own per-modality heads (for concat fusion, the modality's
slice of the fusion layer). "probe" columns are linear probes: a multinomial logistic regression on
the frozen encoder's pooled features, fitted on the train split and scored on the test split. The
head says how the trained model uses a modality; the probe says what its encoder has learned.

    python -m ml_pipelines.jobs.multimodal_demo [--workdir=workdirs/multimodal_demo] [--epochs=6]
        [--methods=vanilla,ogm_ge,...] [--cpu_devices=N]

Each method uses `configs/multimodal/<method>.py:demo,concat` (av_small, SGD lr 0.01, batch 64).
"visual_only" is vanilla with the audio zeroed (task.mute_modality): its visual accuracy is what
the visual branch can reach; vanilla's lower visual accuracy is the under-training the methods
address. "audio_only" likewise with the visual input zeroed.
"""
from __future__ import annotations

import json
import os
import time

from ml_pipelines.jobs import common

METHODS = ("audio_only", "visual_only", "vanilla", "ogm_ge", "amss", "amss_plus", "agm", "pmr",
           "mmpareto", "gblending", "umt", "mie")
UNIMODAL = {"audio_only": "visual", "visual_only": "audio"}  # reference run: the modality it mutes


def config_for(method: str, epochs: int, width: int, workdir: str):
  from configs.multimodal.common import steps_per_epoch
  c = common.load_config("multimodal", "vanilla" if method in UNIMODAL else method, "demo,concat")
  if method in UNIMODAL:
    c.task.mute_modality = UNIMODAL[method]
  if method == "umt":  # the unimodal reference runs are UMT's teachers
    c.task.umt_teachers = {m: os.path.join(workdir, f"{m}_only") for m in ("audio", "visual")}
  spe = steps_per_epoch(c)
  c.batch_size = 64
  c.model.width = width
  c.total_steps = epochs * spe
  c.log_every = c.eval_every = spe
  c.checkpoint_every = c.total_steps
  if method == "mie":  # alternate audio / visual stages of 3/10, 3/10, 2/10, 2/10 of the epochs
    parts = [max(1, round(epochs * f)) for f in (0.3, 0.3, 0.2, 0.2)]
    parts[-1] = max(1, epochs - sum(parts[:-1]))
    c.stages = tuple({**dict(stage), "steps": p * spe} for stage, p in zip(c.stages, parts))
    c.total_steps = sum(p * spe for p in parts)
    c.task.mie_collect_steps = spe
  return c


def curves(workdir: str) -> dict[str, list[tuple[int, float]]]:
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      for k in ("eval/accuracy", "eval/audio_accuracy", "eval/visual_accuracy"):
        if k in rec:
          out.setdefault(k, []).append((rec["step"], rec[k]))
  return out


def probe_accuracies(config, state, batch: int = 250) -> dict[str, float]:
  """Test accuracy of a linear probe on each frozen encoder (train split -> test split).

  Features are the encoders' pooled outputs in eval mode, from the inputs the run saw (a muted
  modality stays zero); the probe is scikit-learn's multinomial logistic regression on standardised
  features.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  from ml_pipelines import data
  import models
  model = nnx.eval_shape(lambda: models.build(config.model, seed=config.seed))
  model.eval()
  graphdef = nnx.graphdef(model)
  mute = config.task.get("mute_modality", "") or ""

  @jax.jit
  def encode(params, rest, audio, visual):
    if mute:
      audio, visual = (jnp.zeros_like(x) if m == mute else x
                       for m, x in (("audio", audio), ("visual", visual)))
    return nnx.merge(graphdef, params, rest).encode(audio, visual)

  feats, labels = {}, {}
  for split in (config.data.train_split, config.data.eval_split):
    arrays = data.get(config.data.name)(config.data, split).source.arrays
    parts = [encode(state["params"], state["rest"], arrays["audio"][i:i + batch],
                    arrays["visual"][i:i + batch]) for i in range(0, len(arrays["label"]), batch)]
    feats[split] = {m: np.concatenate([np.asarray(p[j], np.float32) for p in parts])
                    for j, m in enumerate(("audio", "visual"))}
    labels[split] = arrays["label"]
  train_split, test_split = config.data.train_split, config.data.eval_split
  out = {}
  for m in ("audio", "visual"):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(feats[train_split][m], labels[train_split])
    out[m] = float(clf.score(feats[test_split][m], labels[test_split]))
  return out


def table(rows) -> str:
  return common.markdown_table(
      ["method", "fused acc", "audio acc", "visual acc", "audio probe", "visual probe", "seconds"],
      [[name, *(f"{r[f'eval/{k}accuracy']:.3f}" for k in ("", "audio_", "visual_")),
        f"{probe['audio']:.3f}", f"{probe['visual']:.3f}", f"{secs:.0f}"]
       for name, r, probe, secs in rows])


def plot(all_curves, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
  colours = plt.get_cmap("tab10")
  for ax, key in zip(axes, ("eval/accuracy", "eval/audio_accuracy", "eval/visual_accuracy")):
    methods = [n for n in all_curves if n not in UNIMODAL]
    for name, cv in all_curves.items():
      if key in cv:  # the unimodal references dashed grey, one colour per method
        s, v = zip(*cv[key])
        style = (dict(color="0.5" if name == "audio_only" else "0.2", linestyle="--")
                 if name in UNIMODAL else dict(color=colours(methods.index(name) % 10)))
        ax.plot(s, v, label=name, **style)
    ax.set_title(key.split("/")[1]); ax.set_xlabel("step")
  axes[0].set_ylabel("test accuracy"); axes[-1].legend(fontsize=7)
  fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)


def main(argv=None) -> None:
  parser = common.parser(__doc__, workdir="workdirs/multimodal_demo", methods=METHODS)
  parser.add_argument("--epochs", type=int, default=6)
  parser.add_argument("--width", type=int, default=8)
  args = parser.parse_args(argv)
  # the methods share most compiled programs (model init, evaluation): compile each once
  common.start_jax(args, compilation_cache=os.path.join(args.workdir, "jax_cache"))
  from ml_pipelines import train
  rows, all_curves, t0 = [], {}, time.time()
  for method in args.methods.split(","):
    wd = os.path.join(args.workdir, method)
    start = time.time()
    config = config_for(method, args.epochs, args.width, args.workdir)
    result = train.train_and_evaluate(config, wd)
    probe = probe_accuracies(config, result["state"])
    print(f"linear probe (test accuracy): audio {probe['audio']:.3f}  visual {probe['visual']:.3f}",
          flush=True)
    rows.append((method, result, probe, time.time() - start))
    all_curves[method] = curves(wd)
  md = table(rows)
  total = time.time() - t0
  print(md)
  print(f"total {total:.0f} s")
  with open(os.path.join(args.workdir, "results.md"), "w") as f:
    f.write(md + f"\n\nTotal {total:.0f} s; `python -m ml_pipelines.jobs.multimodal_demo "
            f"--epochs={args.epochs} --width={args.width}`\n")
  plot(all_curves, os.path.join(args.workdir, "curves.png"))
  print(f"\ntable:       {args.workdir}/results.md\nplot:        {args.workdir}/curves.png "
        f"(per-modality test accuracy curves)\nper method:  {args.workdir}/<method>/ "
        f"(metrics.jsonl, tensorboard/, checkpoints/, curves.png)", flush=True)


if __name__ == "__main__":
  main()

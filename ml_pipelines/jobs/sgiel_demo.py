"""Embedded SGIEL demo: synthetic two-spectrum identities (no download), the plain two-stream
baseline vs SGIEL on infrared-to-visible rank-1 / mAP, and a probe of where body shape lives.

    python -m ml_pipelines.jobs.sgiel_demo [--workdir=/tmp/sgiel_demo] [--steps=300]
        [--methods=baseline,sgiel] [--cpu_devices=N]

Identities are (body shape, texture, colours) with 10 identities per shape (`data.reid.
render_identities`); the test identities are disjoint from the training ones. The probe fits a
logistic regression (scikit-learn, 5-fold cross-validation) predicting the body shape of each test
image from SGIEL's shape-subspace projection z = f P and from its shape-erased feature
f_e = f - f P^ P^^T: shape should be decodable from z and much less from f_e. `<workdir>/sgiel.png`
shows a few identities (visible, infrared, shape map) and the probe accuracies.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ml_pipelines.jobs import common

METHODS = ("baseline", "sgiel")


def features(config, state, images, modality: str):
  """(f, z, f_e) of `images` with the trained weights (eval mode)."""
  import jax.numpy as jnp
  from flax import nnx
  import models
  from ml_pipelines import train
  from ml_pipelines.data.reid import normalise
  model = models.build(config.model, seed=config.seed)
  model.eval()
  graphdef, _, _ = nnx.split(model, nnx.Param, ...)
  model = nnx.merge(graphdef, *train.Env.variables(state))
  stem, neck = ((model.visible, model.bottleneck) if modality == "visible"
                else (model.thermal, model.bottleneck_ir))
  from models.sgiel import gem
  f = neck(gem(model.trunk(stem(jnp.asarray(normalise(images))), modality)))
  p_hat = model.unit_proj()
  return (np.asarray(f), np.asarray(f @ model.proj[...]),
          np.asarray(f - (f @ p_hat) @ p_hat.T))


def probe(x, y) -> float:
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import cross_val_score
  from sklearn.preprocessing import StandardScaler
  from sklearn.pipeline import make_pipeline
  clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
  return float(cross_val_score(clf, x, y, cv=5).mean())


def save_picture(path, data_vis, data_ir, probes: dict):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [2, 1]})
  tiles = [np.concatenate([data_vis["image"][i * 8], data_ir["image"][i * 8],
                           data_vis["shape"][i * 8]], axis=0) for i in range(6)]
  axes[0].imshow(np.concatenate(tiles, axis=1))
  axes[0].set_title("identities: visible / infrared / shape map")
  axes[0].axis("off")
  axes[1].bar(list(probes), list(probes.values()), color=["tab:blue", "tab:orange"])
  axes[1].axhline(1 / 6, color="gray", ls="--", label="chance")
  axes[1].set_ylim(0, 1)
  axes[1].set_title("shape probe accuracy")
  axes[1].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None) -> None:
  parser = common.parser(__doc__, workdir="/tmp/sgiel_demo", methods=METHODS)
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args(argv)
  common.start_jax(args)
  from ml_pipelines import train
  from ml_pipelines.data import reid as reid_data
  rows, probes = [], {}
  for method in args.methods.split(","):
    config = common.load_config("reid", "sgiel",
                                "synthetic,baseline" if method == "baseline" else "synthetic")
    config.total_steps = config.eval_every = config.checkpoint_every = args.steps
    start = time.time()
    out = train.train_and_evaluate(config, os.path.join(args.workdir, method))
    rows.append([method, *(f"{100 * out[f'eval/{k}']:.1f}" for k in ("rank-1", "mAP", "mINP")),
                 f"{time.time() - start:.0f}"])
    if method == "sgiel":
      n_train = int(config.data.get("num_train_ids", 40))
      test = reid_data.render_identities(int(config.data.get("num_test_ids", 20)),
                                         int(config.data.get("per_modality", 8)), seed=1,
                                         id_offset=n_train)
      zs, erased, shapes = [], [], []
      for m, name in (("vis", "visible"), ("ir", "infrared")):
        _, z, f_e = features(config, out["state"], test[m]["image"], name)
        zs.append(z)
        erased.append(f_e)
        shapes.append((test[m]["label"] + n_train) % reid_data.NUM_SHAPES)
      y = np.concatenate(shapes)
      probes = {"z = f P": probe(np.concatenate(zs), y),
                "f_e (shape-erased)": probe(np.concatenate(erased), y)}
  os.makedirs(args.workdir, exist_ok=True)
  print(f"\nVisible-infrared re-ID on synthetic two-spectrum identities ({args.steps} steps; "
        "infrared queries, visible gallery; %):")
  print(common.markdown_table(["method", "rank-1", "mAP", "mINP", "time (s)"], rows))
  if probes:
    print("\nShape probe (logistic regression, 5-fold CV accuracy; chance 1/6):")
    print(common.markdown_table(["feature", "accuracy"],
                                [[k, f"{100 * v:.1f}"] for k, v in probes.items()]))
    d = reid_data.render_identities(6, 8, seed=1)
    path = os.path.join(args.workdir, "sgiel.png")
    save_picture(path, d["vis"], d["ir"], probes)
    print(f"picture: {path}")


if __name__ == "__main__":
  main()

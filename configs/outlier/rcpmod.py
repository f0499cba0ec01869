"""RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD) on multi-view data with injected
outliers and 30% missing views.

    python -m ml_pipelines.train --config=configs/outlier/rcpmod.py:digits --workdir=/tmp/rcpmod
    python -m ml_pipelines.train --config=configs/outlier/rcpmod.py:digits,recon_only --workdir=...

Argument `<dataset>[,<variant>]`:
- datasets: `digits` (scikit-learn digits: the 64 pixels and 32 row/column/block summaries),
  `generated` (600 samples of 6 class clusters seen through random maps: two views, 20 and 12
  dims; `generated3` adds a third, 16 dims), and the benchmarks in their official files under
  `--config.data.data_dir` (default `data/rcpmod`): `scene15`, `landuse21`, `bdgp`, `handwritten`
  (all six views, as the official code), `fashion`, `caltech101_20` (two views: the official
  pair, or `--config.data.views='(a, b)'` with the model's `archs`).
  With V > 2 views the C(V, 2) pairs train one after another, one stage of the full schedule each
  (fresh Adam, the autoencoders carried on), and a sample's score is its mean over the pairs
  (official `run.py`; `tasks/outlier.py`).
- variants: `rcpmod` (default: every term, the official knobs), `recon_only` (the reconstruction
  loss and the attribute score only), `contrastive` (reconstruction + plain NT-Xent: no memory,
  no neighbour, triplet or spreading terms; fused score).
Official defaults (`configure.py`): batch 256, Adam lr 1e-3, τ 0.5, k 6, memory of the last
`memory_size` batches' 5% least-similar samples, kNN tables every 50 epochs, negatives every
`change_neg_epoch`, imputed contrastive from epoch 50, triplet + spreading warm-up to `warmup_max`
over 100 epochs then towards `w2`, per-dataset epochs and R_w (the embedded sets take the Scene-15
values and 60 epochs); the official encoders; data corrupted by the official protocol
(`data.outlier_rates`: class, attribute and class-attribute outlier rates, 15% in all;
`data.missing_rate`; `data.data_seed`). Evaluation is transductive: the AUC of the fused score on
the training set itself.
"""
import itertools

import ml_collections

# name: (archs, samples, epochs, w2, warmup_max, schedule_epoch, R_w, memory_size,
#        change_neg_epoch) -- the official `configure.py` values for the benchmarks
_SCENE_KNOBS = (0.4, 0.02, 400, 0.25, 5, 5)
DATASETS = {
    "digits": (((64, 1024, 1024, 64), (32, 1024, 1024, 64)), 1797, 60, *_SCENE_KNOBS),
    "generated": (((20, 1024, 1024, 64), (12, 1024, 1024, 64)), 600, 60, *_SCENE_KNOBS),
    "generated3": (((20, 1024, 1024, 64), (12, 1024, 1024, 64), (16, 1024, 1024, 64)), 600, 60,
                   *_SCENE_KNOBS),
    "scene15": (((20, 1024, 1024, 64), (59, 1024, 1024, 64)), 4485, 90, *_SCENE_KNOBS),
    "landuse21": (((59, 1024, 1024, 64), (40, 1024, 1024, 64)), 2100, 115,
                  0.2, 0.02, 1000, 0.6, 5, 5),
    "bdgp": (((1750, 1024, 64), (79, 1024, 64)), 2500, 130, 0.2, 0.01, 1000, 0.25, 10, 1),
    "handwritten": (tuple((f, 1024, 1024, 64) for f in (240, 76, 216, 47, 64, 6)), 2000, 50,
                    0.2, 0.02, 1000, 0.7, 5, 5),
    "fashion": (((784, 1024, 256), (784, 1024, 256)), 10000, 400, 0.4, 0.05, 700, 0.5, 10, 10),
    "caltech101_20": (((48, 1024, 1024, 64), (40, 1024, 1024, 64)), 2386, 90, *_SCENE_KNOBS),
}
VARIANTS = {
    "rcpmod": {},
    "recon_only": dict(w_con=0.0, w_knn=0.0, warmup_max=0.0, w2=0.0, memory_size=0,
                       score="attribute"),
    "contrastive": dict(w_knn=0.0, warmup_max=0.0, w2=0.0, memory_size=0),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset, variant = ((arg or "digits").split(",") + ["rcpmod"])[:2]
  if dataset not in DATASETS or variant not in VARIANTS:
    raise ValueError(f"Unknown dataset or variant in {arg!r}; datasets {', '.join(DATASETS)}, "
                     f"variants {', '.join(VARIANTS)}.")
  archs, n, epochs, w2, warmup_max, schedule_epoch, r_w, memory_size, change_neg = \
      DATASETS[dataset]
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 256
  c.eval_batch_size = 512
  pairs = list(itertools.combinations(range(len(archs)), 2))
  pair_steps = epochs * (n // c.batch_size)
  c.total_steps = len(pairs) * pair_steps
  c.log_every = 50
  c.eval_every = c.total_steps
  c.checkpoint_every = c.total_steps
  c.keep_checkpoints = 1
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.data = ml_collections.ConfigDict(dict(
      name="multiview_outliers", source="generated" if dataset == "generated3" else dataset,
      data_dir="data/rcpmod", data_seed=0,
      outlier_rates=(0.02, 0.05, 0.08), missing_rate=0.3, num_samples=n, train_split="train",
      eval_split="train"))
  if dataset == "generated3":
    c.data.views = (0, 1, 2)
  if len(pairs) > 1:
    c.stages = tuple(dict(name=f"views_{a}_{b}", steps=pair_steps) for a, b in pairs)
  c.model = ml_collections.ConfigDict(dict(name="rcpmod", archs=archs))
  c.task = ml_collections.ConfigDict(dict(
      name="rcpmod", k=6, temperature=0.5, w_con=1.0, w_knn=1.0, w2=w2, warmup_max=warmup_max,
      schedule_epoch=schedule_epoch, memory_size=memory_size, memory_ratio=0.05,
      change_knn_epoch=50, change_neg_epoch=change_neg, impute_from=50, neg_rank=50, r_w=r_w,
      score="fused"))
  c.task.update(VARIANTS[variant])
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3,
                                               schedule="constant", transforms=()))
  return c

"""RCPMOD (ACM MM 2024, arXiv 2408.07819; 180400518/RCPMOD) on two-view data with injected
outliers and 30% missing views.

    python -m ml_pipelines.train --config=configs/outlier/rcpmod.py:digits --workdir=/tmp/rcpmod
    python -m ml_pipelines.train --config=configs/outlier/rcpmod.py:digits,recon_only --workdir=...

Argument `<dataset>[,<variant>]`:
- datasets: `digits` (scikit-learn digits: the 64 pixels and 32 row/column/block summaries),
  `generated` (600 samples of 6 class clusters seen through two random maps, 20 and 12 dims).
- variants: `rcpmod` (default: every term, the official knobs), `recon_only` (the reconstruction
  loss and the attribute score only), `contrastive` (reconstruction + plain NT-Xent: no memory,
  no neighbour, triplet or spreading terms; fused score).
Official defaults (`configure.py`): batch 256, Adam lr 1e-3, τ 0.5, k 6, memory of the last 5
batches' 5% least-similar samples, kNN tables every 50 epochs, negatives every 5, imputed
contrastive from epoch 50, triplet + spreading warm-up to 0.02 over 100 epochs then towards 0.2,
R_w 0.25; data corrupted by the official protocol (`data.outlier_rates`: class, attribute and
class-attribute outlier rates, 15% in all; `data.missing_rate`; `data.data_seed`); encoders
[F, 1024, 1024, 64] (the Scene-15 arch). Evaluation is transductive: the AUC of the fused score on
the training set itself.
"""
import ml_collections

DATASETS = {"digits": (64, 32, 1797), "generated": (20, 12, 600)}  # dims and sample count
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
  d1, d2, n = DATASETS[dataset]
  epochs = 60
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 256
  c.eval_batch_size = 512
  c.total_steps = epochs * (n // c.batch_size)
  c.log_every = 50
  c.eval_every = c.total_steps
  c.checkpoint_every = c.total_steps
  c.keep_checkpoints = 1
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  c.data = ml_collections.ConfigDict(dict(
      name="two_view_outliers", source=dataset, data_seed=0, outlier_rates=(0.02, 0.05, 0.08),
      missing_rate=0.3,
      num_samples=n, train_split="train", eval_split="train"))
  c.model = ml_collections.ConfigDict(dict(name="rcpmod",
                                           archs=((d1, 1024, 1024, 64), (d2, 1024, 1024, 64))))
  c.task = ml_collections.ConfigDict(dict(
      name="rcpmod", k=6, temperature=0.5, w_con=1.0, w_knn=1.0, w2=0.2, warmup_max=0.02,
      schedule_epoch=1000, memory_size=5, memory_ratio=0.05, change_knn_epoch=50,
      change_neg_epoch=5, impute_from=50, neg_rank=50, r_w=0.25, score="fused"))
  c.task.update(VARIANTS[variant])
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3,
                                               schedule="constant", transforms=()))
  return c

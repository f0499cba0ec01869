"""DPCML (Bao et al., NeurIPS 2022; statusrank/DPCML) and CML on implicit feedback.

    python -m ml_pipelines.train --config=configs/recsys/dpcml.py:multi_interest --workdir=/tmp/d
    python -m ml_pipelines.train --config=configs/recsys/dpcml.py:steam,dpcml1 \
        --config.data.data_dir=/data/DPCML/data/Steam-200k --workdir=workdirs/dpcml_steam

Argument `<dataset>[,<variant>]`:
- datasets: `multi_interest` (generated), `steam`, `citeulike`, `ml1m_users` (the official
  `users.dat` files), `ml1m`, `ml10m` (GroupLens `ratings.dat`, rating >= 4).
- variants: `dpcml1` (C = 5, uniform negatives, 10 triplets per pair, δ1 0.1 / δ2 0.35),
  `dpcml2` (default; C = 5, hardest of 10 negatives, δ1 0.05 / δ2 0.25), `cml` (C = 1, uniform)
  and `cml_hard` (C = 1, hardest of 10); `mf_bpr`: the matrix-factorisation baseline, inner-product
  scores trained by BPR with L2 λ = 0.0025 on the looked-up rows (Rendle et al., UAI 2009; init
  N(0, 0.1²) and λ as MyMediaLite's BPRMF; the official DPCML code ships no MF baseline) on the
  uniform triplets of `cml`, without norm projections.
Official defaults (`shells/run.sh`): Adam lr 1e-3, batch 256, 100 epochs, d = 100, margin 1,
η = 10; users projected to the unit sphere and looked-up items into the unit ball after / before
every step (`optimizer.post_transforms = ("norm_projections",)`). Evaluation: P/R/NDCG@{3,5},
MAP, MRR, AUC on the validation users (`--config.data.eval_split=test` for the test numbers).

Tables shard by rows over the `fsdp` mesh axis (`sharding_rules`); the user and item counts must
then divide by the axis size (`mesh.fsdp`, 1 by default).
"""
import ml_collections

DATASETS = {  # name: (builder, options, num_users, num_items) after the official filtering
    "multi_interest": ("multi_interest", dict(num_users=2000, num_items=1000, per_user=30), 2000,
                       1000),
    "steam": ("users_dat", dict(data_dir="data/Steam-200k"), 3757, 5113),
    "citeulike": ("users_dat", dict(data_dir="data/CiteULike"), 5219, 25975),
    "ml1m_users": ("users_dat", dict(data_dir="data/ml-1m"), 6034, 3953),
    "ml1m": ("movielens_ratings", dict(data_dir="data/ml-1m"), 6034, 3953),
    "ml10m": ("movielens_ratings", dict(data_dir="data/ml-10m"), 69167, 10019),
}
VARIANTS = {  # name: (C, negatives per triplet, triplets per pair, δ1, δ2)
    "dpcml1": (5, 1, 10, 0.1, 0.35),
    "dpcml2": (5, 10, 1, 0.05, 0.25),
    "cml": (1, 1, 10, 0.1, 0.35),
    "cml_hard": (1, 10, 1, 0.05, 0.25),
    "mf_bpr": (1, 1, 10, 0.1, 0.35),  # the model and task are replaced below
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset, variant = ((arg or "multi_interest").split(",") + ["dpcml2"])[:2]
  if dataset not in DATASETS or variant not in VARIANTS:
    raise ValueError(f"Unknown dataset or variant in {arg!r}; datasets {', '.join(DATASETS)}, "
                     f"variants {', '.join(VARIANTS)}.")
  builder, options, users, items = DATASETS[dataset]
  c_vectors, negatives, reps, d1, d2 = VARIANTS[variant]
  embedded = dataset == "multi_interest"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 3000 if embedded else 50000
  c.batch_size = 256
  c.eval_batch_size = 256
  c.log_every = 100
  c.eval_every = 1000 if embedded else 5000
  c.checkpoint_every = c.eval_every
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ((r"user_embeddings$", ("fsdp", None, None)),
                      (r"item_embeddings$", ("fsdp", None)))
  c.data = ml_collections.ConfigDict(dict(
      name=builder, train_split="train", eval_split="val", num_negatives=negatives,
      triplets_per_pair=reps, **options))
  c.model = ml_collections.ConfigDict(dict(name="dpcml", num_users=users, num_items=items,
                                           dim=32 if embedded else 100, num_vectors=c_vectors))
  c.task = ml_collections.ConfigDict(dict(name="metric_learning_recsys", margin=1.0, reg=10.0,
                                          delta1=d1, delta2=d2, per_pair=True, ks=(3, 5)))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=3e-3 if embedded else 1e-3, schedule="constant", transforms=(),
      post_transforms=("norm_projections",)))
  if variant == "mf_bpr":
    c.sharding_rules = ((r"user_embeddings$", ("fsdp", None)),
                        (r"item_embeddings$", ("fsdp", None)))
    c.model = ml_collections.ConfigDict(dict(name="matrix_factorization", num_users=users,
                                             num_items=items, dim=c.model.dim))
    c.task = ml_collections.ConfigDict(dict(name="bpr_recsys", l2=0.0025, ks=(3, 5)))
    c.optimizer.post_transforms = ()
  return c

"""N² (Sun et al., NeurIPS 2024; official code sunjss/N2) and its baselines on node and graph tasks.

    python -m ml_pipelines.train --config=configs/graph/n2.py:csbm_hetero --workdir=/tmp/n2
    python -m ml_pipelines.train --config=configs/graph/n2.py:far_pair,gcn --workdir=/tmp/gcn
    python -m ml_pipelines.train --config=configs/graph/n2.py:amazon_photo \
        --config.data.data_dir=/data/shchur --workdir=workdirs/n2_photo

Argument: `<dataset>[,<model>]`, model one of n2 (default), gcn, gat, mlp.
- Embedded (generated, no download): `csbm` / `csbm_hetero` (contextual SBM, 2,000 nodes, 2 classes,
  mean degree 10, homophily 0.9 / 0.2, weak features: class indicator + N(0, 1.5²) noise, so the
  graph matters at both homophilies), `far_pair` (are two marked nodes more than 4 hops apart?),
  `colour_pair` (do two marked nodes more than 4 hops apart share a colour?).
- Node tasks from manual directories (`ml_pipelines/data/graph_sets.py` lists the layouts):
  amazon_computers, amazon_photo, coauthor_cs, coauthor_physics (Shchur npz), amazon_ratings,
  minesweeper, tolokers, questions (Yandex npz), ogbn_arxiv (OGB raw csv).
- Graph tasks: proteins, nci1, imdb_binary, imdb_multi, collab (TU text files; 10 stratified
  folds, `--config.data.fold`; the test fold is held out, unlike the official code), ogbg_molpcba
  (prepared TFDS `ogbg_molpcba` under `--config.data.data_dir`, default `$TFDS_DATA_DIR`; 128
  assays with missing labels: masked BCE, OGB's per-task average precision `eval/ap`).

Node tasks run full batch as the official code (nbatch = 1): the graph is a task constant on the
devices, one step is one epoch over every training node, so `total_steps` counts epochs. Official
defaults: T = 4, d_model 128, q_dim 64, n_q 8, n_pnode 256, dropout 0.4, Adam lr 1e-3 with L2 1e-6
added to the gradient, constant rate. The binary Yandex sets the paper scores by ROC-AUC
(minesweeper, tolokers, questions) report `eval/roc_auc` (`task.metric`) besides accuracy.
"""
import ml_collections

from configs.graph.common import run_config
from ml_pipelines.data.graph_sets import MOLPCBA

# name: (builder, options, #features, #classes, #training nodes) of the node tasks.
NODE = {
    "csbm": ("sbm", dict(num_nodes=2000, num_classes=2, avg_degree=10.0, homophily=0.9,
                         feature_dim=32, feature_noise=1.5), 32, 2, 1200),
    "csbm_hetero": ("sbm", dict(num_nodes=2000, num_classes=2, avg_degree=10.0, homophily=0.2,
                                feature_dim=32, feature_noise=1.5), 32, 2, 1200),
    "amazon_computers": ("shchur", dict(dataset="amazon_electronics_computers"), 767, 10, 8252),
    "amazon_photo": ("shchur", dict(dataset="amazon_electronics_photo"), 745, 8, 4590),
    "coauthor_cs": ("shchur", dict(dataset="ms_academic_cs"), 6805, 15, 11001),
    "coauthor_physics": ("shchur", dict(dataset="ms_academic_phy"), 8415, 5, 20697),
    "amazon_ratings": ("yandex", dict(dataset="amazon-ratings"), 300, 5, 12246),
    "minesweeper": ("yandex", dict(dataset="minesweeper"), 7, 2, 5000),
    "tolokers": ("yandex", dict(dataset="tolokers"), 10, 2, 5879),
    "questions": ("yandex", dict(dataset="questions"), 301, 2, 24460),
    "ogbn_arxiv": ("ogbn", dict(), 128, 40, 90941),
}
# name: (builder, options, #features, #classes) of the graph tasks.
GRAPH = {
    "far_pair": ("far_pair", dict(), 2, 2),
    "colour_pair": ("colour_pair", dict(), 4, 2),
    "proteins": ("tu", dict(dataset="PROTEINS"), 3, 2),
    "nci1": ("tu", dict(dataset="NCI1"), 37, 2),
    "imdb_binary": ("tu", dict(dataset="IMDB-BINARY", degree_features=True), 136, 2),
    "imdb_multi": ("tu", dict(dataset="IMDB-MULTI", degree_features=True), 89, 3),
    "collab": ("tu", dict(dataset="COLLAB", degree_features=True), 492, 3),
    "ogbg_molpcba": ("ogbg_molpcba", MOLPCBA, 12, 128),
}
ROC_AUC = ("minesweeper", "tolokers", "questions")
N2 = dict(d_model=128, q_dim=64, n_q=8, n_pnode=256, T=4, dropout=0.4)
N2_EMBEDDED = dict(d_model=32, q_dim=16, n_q=4, n_pnode=16, T=4, dropout=0.1)
BASELINES = {"gcn": dict(hidden=(64,), dropout=0.5), "gat": dict(hidden=(8,), heads=8, dropout=0.6),
             "mlp": dict(hidden=(64,), dropout=0.5)}
GRAPH_BASELINES = {"gcn": dict(hidden=(64, 64)), "gat": dict(hidden=(16, 16), heads=4),
                   "mlp": dict(hidden=(64, 64))}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  dataset, model = ((arg or "csbm_hetero").split(",") + ["n2"])[:2]
  if dataset not in NODE and dataset not in GRAPH:
    raise ValueError(f"Unknown N² dataset {dataset!r}; choose from {', '.join([*NODE, *GRAPH])}.")
  if model not in ("n2", *BASELINES):
    raise ValueError(f"Unknown model {model!r}; use n2, gcn, gat or mlp.")
  embedded = dataset in ("csbm", "csbm_hetero", "far_pair", "colour_pair")
  if dataset in NODE:
    builder, options, features, classes, train_nodes = NODE[dataset]
    # every training node a step, rounded down to a multiple of 8 data shards (a shuffled epoch
    # leaves out fewer than 8 nodes, different ones every step)
    c = run_config(total_steps=200 if embedded else 1000, batch_size=train_nodes // 8 * 8,
                   eval_batch_size=400 if embedded else 1000, log_every=20, eval_every=100)
    c.task = ml_collections.ConfigDict(dict(
        name="node_classification", metric="roc_auc" if dataset in ROC_AUC else "accuracy"))
    names = {"n2": "n2_node", "gcn": "gcn", "gat": "gat", "mlp": "mlp"}
    extra = BASELINES.get(model, {})
    splits = ("train", "test")
  else:
    builder, options, features, classes = GRAPH[dataset]
    c = run_config(total_steps=600 if embedded else 3000, batch_size=32, eval_batch_size=200,
                   log_every=50, eval_every=500)
    c.task = ml_collections.ConfigDict(dict(
        name="graph_multilabel" if dataset == "ogbg_molpcba" else "graph_classification"))
    names = {"n2": "n2_graph", "gcn": "gcn_graph_classifier", "gat": "gat_graph_classifier",
             "mlp": "mlp_graph_classifier"}
    extra = GRAPH_BASELINES.get(model, {})
    splits = ("train", "test")
  if model == "n2":
    extra = dict(N2_EMBEDDED if embedded else N2)
  if not embedded:
    options = {"data_dir": f"data/{dataset}", **options}
  c.data = ml_collections.ConfigDict(dict(name=builder, train_split=splits[0],
                                          eval_split=splits[1], **options))
  c.model = ml_collections.ConfigDict(dict(name=names[model], in_features=features,
                                           num_classes=classes, **extra))
  lr = 1e-3 if model == "n2" else 1e-2 if dataset in NODE else 3e-3
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=lr if not embedded or model != "n2" else 3e-3,
      schedule="constant", weight_decay=1e-6 if model == "n2" else 5e-4, transforms=()))
  return c

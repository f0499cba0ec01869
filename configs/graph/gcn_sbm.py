"""A 2-layer GCN (Kipf & Welling 2017) for node classification on the embedded contextual SBM.

    python -m ml_pipelines.train --config=configs/graph/gcn_sbm.py --workdir=workdirs/gcn_sbm
    python -m ml_pipelines.train --config=configs/graph/gcn_sbm.py --workdir=/tmp/g \
        --config.data.homophily=0.2 --config.total_steps=100

The whole graph lives on the devices once (`Task.constants`); every step is one full-batch update
over all 240 training nodes (batch_size = #train nodes, so total_steps = epochs), as the official
code (tkipf/gcn) trains: Adam lr 0.01, dropout 0.5, 16 hidden units, L2 5e-4 on the first layer's
weights, 200 epochs. Evaluation reads the test nodes off one whole-graph forward.
"""
import ml_collections

from configs.graph.common import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  # batch_size: every training node (the 400-node graph's 60% split), one full-batch step an epoch
  c = run_config(total_steps=200, batch_size=240, eval_batch_size=80, log_every=20,
                 eval_every=100)
  c.data = ml_collections.ConfigDict(dict(
      name="sbm", train_split="train", eval_split="test", num_nodes=400, num_classes=4,
      avg_degree=8.0, homophily=0.9, feature_dim=8, feature_noise=1.0, graph_seed=0))
  c.model = ml_collections.ConfigDict(dict(name="gcn", in_features=8, num_classes=4,
                                           hidden=(16,), dropout=0.5))
  c.task = ml_collections.ConfigDict(dict(name="node_classification"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=0.01, schedule="constant", weight_decay=5e-4,
      weight_decay_mask="layers/0/linear/kernel$", transforms=()))
  return c

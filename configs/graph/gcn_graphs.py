"""A GCN with a masked mean-pool readout for graph classification on padded graphs: the embedded
cycles-versus-paths set (one-hot degree features, the TU convention for unlabelled graphs).

    python -m ml_pipelines.train --config=configs/graph/gcn_graphs.py --workdir=workdirs/gcn_graphs
    python -m ml_pipelines.train --config=configs/graph/gcn_graphs.py --workdir=/tmp/g \
        --cpu_devices=8 --config.total_steps=100

Each example is one graph padded to 21 nodes and 40 edges (`data/graphs.py`), so a batch is
`x [B, 21, 3]`, `senders / receivers [B, 40]`, sharded over the batch axis like images.
"""
import ml_collections

from configs.graph.common import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = run_config(total_steps=300, batch_size=32, eval_batch_size=120, log_every=50,
                 eval_every=150)
  c.data = ml_collections.ConfigDict(dict(
      name="cycles_paths", train_split="train", eval_split="test", num_graphs=600, min_nodes=6,
      max_nodes=20, graph_seed=0))
  c.model = ml_collections.ConfigDict(dict(name="gcn_graph_classifier", in_features=3,
                                           num_classes=2, hidden=(32, 32), dropout=0.0))
  c.task = ml_collections.ConfigDict(dict(name="graph_classification"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=0.01, schedule="cosine", warmup_steps=10, transforms=()))
  return c

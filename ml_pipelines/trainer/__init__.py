"""The trainer's machinery: config loading and overrides, the mesh and sharding rules, checkpoints,
and the metrics writer. The loop itself is `ml_pipelines/train.py`."""

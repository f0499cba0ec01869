"""What the graph configs share: the trainer's run keys (one device mesh axis for data, no sharding
rules: the graphs are small) around each config's data, model, task and optimizer blocks."""
import ml_collections


def run_config(*, total_steps: int, batch_size: int, eval_batch_size: int, log_every: int,
               eval_every: int) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = total_steps
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.log_every = log_every
  c.eval_every = eval_every
  c.checkpoint_every = eval_every
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  return c

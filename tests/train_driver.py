"""Runs the trainer in a fresh process (device count and distributed set-up fixed at start-up) and
saves the final parameters as .npz for comparison by the tests.

    python tests/train_driver.py OUT.npz --config=... --workdir=... [--cpu_devices=N] [--config.k=v]
Environment: TRAIN_DRIVER_SLEEP=seconds slows each step (so a test can kill the run mid-way).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  out, argv = sys.argv[1], sys.argv[2:]
  from ml_pipelines.trainer import config as config_lib
  from ml_pipelines import train
  args, overrides = train.parse_args(argv)
  train.initialize_distributed(args)
  import jax
  import numpy as np
  from ml_pipelines import tasks
  from optim.paths import path_str

  config = config_lib.override(config_lib.load(args.config), overrides)
  delay = float(os.environ.get("TRAIN_DRIVER_SLEEP", "0"))
  if delay:
    base = tasks.get(config.task.name)
    original = base.after_step

    def slow(self, env, state, step):
      time.sleep(delay)
      return original(self, env, state, step)
    base.after_step = slow
  result = train.train_and_evaluate(config, args.workdir)
  params = train.Env.variables(result["state"])[0]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    params = multihost_utils.process_allgather(params, tiled=True)
  flat = {path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  if jax.process_index() == 0:
    np.savez(out, **flat)


if __name__ == "__main__":
  main()

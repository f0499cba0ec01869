"""What the demos (`multimodal_demo`, `hashing_demo`, `bnn_compare`) share: their command line
(`--workdir`, `--methods`, `--cpu_devices`, applied before JAX starts), loading a method's config
from the repository's `configs/` whatever the working directory, and their markdown tables."""
from __future__ import annotations

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parser(doc: str, *, workdir: str | None, methods: tuple[str, ...] = (),
           methods_flag: str = "methods") -> argparse.ArgumentParser:
  """`--workdir` (default `workdir`), `--<methods_flag>` (comma-separated, default all of `methods`)
  and `--cpu_devices`; the description is the first line of `doc`."""
  p = argparse.ArgumentParser(description=doc.split("\n")[0])
  p.add_argument("--workdir", default=workdir,
                 help="where each run writes" + ("" if workdir else " (default: a fresh temp dir)"))
  if methods:
    p.add_argument(f"--{methods_flag}", default=",".join(methods),
                   help=f"comma-separated (default: {','.join(methods)})")
  p.add_argument("--cpu_devices", type=int, default=0, help="simulate N CPU devices")
  return p


def start_jax(args, compilation_cache: str | None = None) -> None:
  """Applies `--cpu_devices` (and a persistent compilation cache) before any JAX computation."""
  import jax
  if compilation_cache:
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(compilation_cache))
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)


def load_config(family: str, name: str, arg: str):
  """`configs/<family>/<name>.py:<arg>` of this repository."""
  from ml_pipelines.trainer import config as config_lib
  return config_lib.load(os.path.join(ROOT, "configs", family, f"{name}.py") + f":{arg}")


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A markdown table; cells are written with `str`, so format numbers before."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def trained_model(c, state):
  """The model of config `c` in eval mode with the trained parameters of a final `state`
  (trainable and frozen parts merged), for drawing what a demo run learnt."""
  import models
  from flax import nnx
  from ml_pipelines.trainer import partition
  model = models.build(c.model, seed=c.seed)
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  model = nnx.merge(graphdef, partition.merge(state["params"], state["frozen"]), rest)
  model.eval()
  return model

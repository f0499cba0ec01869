"""N², DPCML and RCPMOD throughput, ours (JAX) against the official PyTorch code in one command,
and the compiled per-device memory of a DPCML train step on a 10M-user x 1M-item table over 1..8
devices.

    python benchmarks/graph_recsys.py --n2_official=/tmp/N2 --dpcml_official=/tmp/DPCML \
        --pyg_site=/tmp/pyg-site --rcpmod_official=/tmp/RCPMOD
    # smaller CPU run:  --nodes=2000 --graphs=64 --users=2000 --items=2000 --steps=5 \
    #                   --outlier_samples=1200 --outlier_epochs=4

- `n2`: one training step (forward, backward, Adam) of N² at the official defaults (T 4, d_model
  128, q_dim 64, n_q 8, 256 pseudo nodes) on a generated node graph (`--nodes`, mean degree 10,
  full batch as the official runs) and on a batch of `--graphs` generated graphs of 10-30 nodes;
  dropout off on both sides.
- `dpcml`: DPCML2 training throughput (triplets/s; C 5, d 100, batch 256, 10 negatives, DCRS over
  all users) on MovieLens-1M-sized tables (`--users`, `--items`), and the time of one full-ranking
  score pass over all users.
- `memory`: the compiled memory analysis (arguments + temporaries per device) of the DPCML train
  step with both tables sharded by rows over 1, 2, 4, 8 simulated CPU devices (compile only, no
  allocation; `--mem_users`, `--mem_items`).
- `rcpmod`: one training epoch (every term: reconstruction, NT-Xent with the memory, kNN
  alignment, triplet + spreading; the per-epoch table refresh included) and one scoring pass
  (completion, attribute and contrastive scores, fusion) of RCPMOD on two views of
  `--outlier_samples` generated samples (20 and 12 dims, the official Scene-15 encoders
  [F, 1024, 1024, 64], batch 256, official corruption and 30% missing views), `--outlier_epochs`
  epochs with the kNN tables, negatives and imputation due every epoch; the median epoch after the
  first (ours: between the epoch-end hooks, so the jitted step's compile stays out). Ours runs
  through the trainer in float32, the official `RCPMOD.train` in float64 as released (its
  `evaluation` timed on its own; its epochs timed between the per-epoch shuffles). Run it without
  `memory` for one CPU device (`memory` makes 8 simulated ones, which the trainer would use).
The official codes run where their paths are given (the PyTorch Geometric install for N² through
`--pyg_site`); on a GPU machine both sides use the GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _timeit(fn, steps: int) -> float:
  fn()  # compile / warm up
  start = time.perf_counter()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - start) / steps



def dpcml_train_step(graphdef):
  """(optax chain, step(params, opt, batch)) of DPCML2's official recipe: the task's hinge loss with
  the diversity term (reg 10, delta 0.05 / 0.25), Adam 1e-3, then the norm projections."""
  import jax
  import ml_collections
  import optax
  from flax import nnx

  import optim
  from ml_pipelines import tasks
  task = tasks.get("metric_learning_recsys")(ml_collections.ConfigDict(
      {"task": {"name": "metric_learning_recsys", "reg": 10.0, "delta1": 0.05, "delta2": 0.25}}))
  tx = optim.build(ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3, post_transforms=("norm_projections",))), 10)

  def step(params, opt, batch):
    def loss(p):
      return task.loss(nnx.merge(graphdef, p), batch, None, None, 0)
    (_, aux), g = jax.value_and_grad(loss, has_aux=True)(params)
    u, opt = tx.update(g, opt, params, **aux["tx_args"])
    return optax.apply_updates(params, u), opt
  return tx, step

def n2_ours(args) -> dict:
  import jax
  import numpy as np
  import optax
  from flax import nnx

  import models
  from ml_pipelines.data import graph_demo, graph_sets, graphs
  graph, labels = graph_demo.contextual_sbm(args.nodes, 4, 10.0, 0.5, 32, 1.0, seed=0)
  rng = np.random.default_rng(0)
  batch = [graph_sets.far_pair_graph(int(rng.integers(10, 31)), rng, 1.0, 4)
           for _ in range(args.graphs)]
  padded = graphs.padded_graph_dataset(batch, 2, max_nodes=31, max_edges=64).source.arrays
  out = {}
  for name, model, data, y in (
      ("node", models.build("n2_node", in_features=32, num_classes=4), graph, labels),
      ("graph", models.build("n2_graph", in_features=2, num_classes=2), padded,
       padded["label"])):
    model.eval()  # dropout off on both sides (the official model too): timing, not training
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, rest, opt, data, y):
      def loss(p):
        m = nnx.merge(graphdef, p, rest)
        logits = m(data)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), nnx.state(
            m, nnx.Not(nnx.Param))
      g, rest = jax.grad(loss, has_aux=True)(params)
      u, opt = tx.update(g, opt, params)
      return optax.apply_updates(params, u), rest, opt
    data = jax.tree.map(jax.numpy.asarray, dict(data))
    state = [params, rest, opt]

    def run():
      state[:] = step(*state, data, y)
      jax.block_until_ready(state[0])
    out[name] = _timeit(run, args.steps)
  return out


def n2_official(args) -> dict:
  if not args.n2_official:
    return {}
  sys.path[:0] = [p for p in (args.pyg_site, args.n2_official) if p]
  import numpy as np
  import torch
  from torch_geometric.data import Batch, Data

  from ml_pipelines.data import graph_demo, graph_sets
  from model.modules import N2Graph, N2Node
  device = "cuda" if torch.cuda.is_available() else "cpu"
  graph, labels = graph_demo.contextual_sbm(args.nodes, 4, 10.0, 0.5, 32, 1.0, seed=0)
  node = Data(x=torch.tensor(graph["x"]), edge_index=torch.tensor(
      np.stack([graph["receivers"], graph["senders"]]).astype(np.int64))).to(device)
  rng = np.random.default_rng(0)
  gs = [graph_sets.far_pair_graph(int(rng.integers(10, 31)), rng, 1.0, 4)
        for _ in range(args.graphs)]
  batch = Batch.from_data_list([Data(x=torch.tensor(g["x"]), edge_index=torch.tensor(
      np.stack([g["receivers"], g["senders"]]).astype(np.int64))) for g in gs]).to(device)
  out = {}
  dims = dict(d_model=128, q_dim=64, n_q=8, n_pnode=256, T=4, dropout=0.4)
  for name, model, data, y in (
      ("node", N2Node(d_in=32, nclass=4, n_c=1, **dims), node, torch.tensor(labels).long()),
      ("graph", N2Graph(d_in=2, nclass=2, n_c=8, **dims), batch,
       torch.tensor([g["label"] for g in gs]))):
    model = model.to(device).eval()
    y = y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run():
      loss = torch.nn.functional.nll_loss(model(data), y)
      opt.zero_grad()
      loss.backward()
      opt.step()
      if device == "cuda":
        torch.cuda.synchronize()
    out[name] = _timeit(run, args.steps)
  return out


def dpcml_ours(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  import models
  model = models.build("dpcml", num_users=args.users, num_items=args.items, dim=100,
                       num_vectors=5)
  graphdef, params = nnx.split(model)
  tx, step = dpcml_train_step(graphdef)
  step = jax.jit(step)
  opt = tx.init(params)
  rng = np.random.default_rng(0)
  batch = {"user": jnp.asarray(rng.integers(0, args.users, 256), jnp.int32),
           "pos": jnp.asarray(rng.integers(0, args.items, 256), jnp.int32),
           "neg": jnp.asarray(rng.integers(0, args.items, (256, 10)), jnp.int32)}
  state = [params, opt]

  def run():
    state[0], state[1] = step(state[0], state[1], batch)
    jax.block_until_ready(state[0])
  step_time = _timeit(run, args.steps)
  score = jax.jit(lambda p, u: nnx.merge(graphdef, p).scores(u))
  users = jnp.arange(args.users, dtype=jnp.int32)

  def rank():
    for s in range(0, args.users, 1024):
      jax.block_until_ready(jax.lax.top_k(score(state[0], users[s:s + 1024]), 50))
  return {"triplets/s": 256 / step_time, "full ranking s": _timeit(rank, 1)}


def dpcml_official(args) -> dict:
  if not args.dpcml_official:
    return {}
  import types

  import numpy as np
  import torch
  sys.path.insert(0, args.dpcml_official)
  for name in [m for m in sys.modules if m == "model" or m.startswith("model.")]:
    del sys.modules[name]  # N²'s official package has the same name
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu":
    torch.Tensor.cuda = lambda self, *a, **k: self
  from model.model import HarCML
  a = types.SimpleNamespace(per_user_k=5, dim=100, max_norm=1.0, reg=10.0, m1=0.05, m2=0.25,
                            sampling_strategy="hard")
  model = HarCML(a, args.users, args.items, margin=1.0).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  rng = np.random.default_rng(0)
  u, p, n = (torch.tensor(x).to(device) for x in (rng.integers(0, args.users, 256),
                                                  rng.integers(0, args.items, 256),
                                                  rng.integers(0, args.items, (256, 10))))

  def run():
    loss = model(u, p, n)
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.ClipUserNorm()
    if device == "cuda":
      torch.cuda.synchronize()
  step_time = _timeit(run, args.steps)

  def rank():
    with torch.no_grad():
      for s in range(0, args.users, 100):  # the official evaluator's chunk
        torch.topk(model.predict(np.arange(s, min(s + 100, args.users))), 50, dim=-1)
  return {"triplets/s": 256 / step_time, "full ranking s": _timeit(rank, 1)}


def _outlier_arrays(args) -> dict:
  from ml_pipelines.data import multiview
  return multiview.outlier_view_arrays("generated", 1, (0.02, 0.05, 0.08), 0.3,
                                       args.outlier_samples, "", (0, 1))


def rcpmod_ours(args) -> dict:
  import jax
  import numpy as np

  from configs.outlier import rcpmod as rcpmod_config
  from ml_pipelines import train
  from ml_pipelines.tasks import outlier
  c = rcpmod_config.get_config("generated")
  c.data.num_samples, c.data.data_seed = args.outlier_samples, 1
  c.model.archs = ((20, 1024, 1024, 64), (12, 1024, 1024, 64))
  steps = args.outlier_samples // c.batch_size
  c.total_steps = args.outlier_epochs * steps
  c.eval_every, c.log_every, c.checkpoint_every = c.total_steps, c.total_steps, 0
  c.task.update(dict(change_knn_epoch=1, change_neg_epoch=1, impute_from=1))
  stamps, scoring = [], []
  after_step, evaluate = outlier.RCPMODTask.after_step, outlier.RCPMODTask.evaluate

  def timed_after_step(self, env, state, step):
    out = after_step(self, env, state, step)
    if step % steps == 0:
      jax.block_until_ready(out)
      stamps.append(time.perf_counter())
    return out

  def timed_evaluate(self, env, state):  # once to compile, once timed
    evaluate(self, env, state)
    start = time.perf_counter()
    out = evaluate(self, env, state)
    scoring.append(time.perf_counter() - start)
    return out
  outlier.RCPMODTask.after_step, outlier.RCPMODTask.evaluate = timed_after_step, timed_evaluate
  try:
    import tempfile
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(c, workdir)
  finally:
    outlier.RCPMODTask.after_step, outlier.RCPMODTask.evaluate = after_step, evaluate
  return {"epoch s": float(np.median(np.diff(stamps)[1:])), "scoring s": scoring[0]}


def rcpmod_official(args) -> dict:
  if not args.rcpmod_official:
    return {}
  import logging
  import tempfile

  import numpy as np
  import torch
  sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
  from stub_imports import install
  install(("matplotlib", "torch.utils.tensorboard", "munkres"))
  sys.path.insert(0, args.rcpmod_official)
  for name in [m for m in sys.modules if m == "model" or m.startswith("model.")]:
    del sys.modules[name]  # N²'s and DPCML's official packages have the same name
  import configure
  import model as official
  a = _outlier_arrays(args)
  config = configure.get_default_config("Scene_15")
  config["Autoencoder"].update(arch1=[20, 1024, 1024, 64], arch2=[12, 1024, 1024, 64])
  t = config["training"]
  t.update(epoch=[args.outlier_epochs], change_knn_epoch=1, change_neg_epoch=1,
           Contr_on_impu_Stepoch=1)
  config["print_num"] = args.outlier_epochs  # one evaluation, after the last epoch
  device = "cuda" if torch.cuda.is_available() else "cpu"
  stamps, scoring = [], []
  shuffle, evaluation = official.shuffle, official.RCPMOD.evaluation

  def timed_shuffle(*arrays, **kw):  # called once at the start of every epoch's batches
    stamps.append(time.perf_counter())
    return shuffle(*arrays, **kw)

  def timed_evaluation(self, *a, **k):
    start = time.perf_counter()
    out = evaluation(self, *a, **k)
    scoring.append(time.perf_counter() - start)
    return out
  official.shuffle, official.RCPMOD.evaluation = timed_shuffle, timed_evaluation
  np.random.seed(1)
  torch.manual_seed(3)
  net = official.RCPMOD(config, 2)
  net.to_device(device)
  mask = np.stack([a["present1"], a["present2"]], 1).astype(np.int64)
  x1, x2 = (torch.tensor(a[k], dtype=torch.float64).to(device) for k in ("x1", "x2"))
  opt = torch.optim.Adam(list(net.autoencoders[0].parameters())
                         + list(net.autoencoders[1].parameters()), lr=1e-3)
  cwd = os.getcwd()
  with tempfile.TemporaryDirectory() as tmp:
    os.makedirs(os.path.join(tmp, "run"))
    os.chdir(os.path.join(tmp, "run"))  # it writes logs and timings to ../
    try:
      net.train(config, logging.getLogger("rcpmod"), x1, x2, torch.from_numpy(mask).to(device),
                opt, device, a["outlier"], 0, 0, 6, 0, "bench", 1, a["label"], (0, 1))
    finally:
      os.chdir(cwd)
      official.shuffle, official.RCPMOD.evaluation = shuffle, evaluation
  return {"epoch s": float(np.median(np.diff(stamps)[1:])), "scoring s": scoring[0]}


def memory(args) -> list[tuple[int, float, float]]:
  """(devices, argument GiB per device, temporaries GiB per device) of the sharded train step."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  import models
  abstract = nnx.eval_shape(lambda: models.build(
      "dpcml", num_users=args.mem_users, num_items=args.mem_items, dim=100, num_vectors=5))
  graphdef, params = nnx.split(abstract)
  tx, step = dpcml_train_step(graphdef)
  rows = []
  for n in (1, 2, 4, 8):
    mesh = Mesh(jax.devices()[:n], ("fsdp",))
    sh = {"user_embeddings": NamedSharding(mesh, P("fsdp", None, None)),
          "item_embeddings": NamedSharding(mesh, P("fsdp", None))}
    p = jax.tree.map(lambda s, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                     sh, nnx.to_pure_dict(params))
    opt = jax.eval_shape(tx.init, p)
    opt = optax.tree_map_params(tx, lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                      sharding=s), opt, sh,
                                transform_non_params=lambda x: jax.ShapeDtypeStruct(
                                    x.shape, x.dtype, sharding=NamedSharding(mesh, P())))
    batch = {k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=NamedSharding(mesh, P("fsdp")))
             for k, s in (("user", (256,)), ("pos", (256,)), ("neg", (256, 10)))}
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, opt, batch).compile()
    m = compiled.memory_analysis()
    rows.append((n, m.argument_size_in_bytes / 2 ** 30, m.temp_size_in_bytes / 2 ** 30))
  return rows


def _print_side_by_side(label: str, ours: dict, theirs: dict, digits: int) -> None:
  """One markdown row per measurement of ours, with the official code's value (NaN if missing)."""
  print(f"| {label} | ours | official |\n|---|---:|---:|")
  for k in ours:
    print(f"| {k} | {ours[k]:.{digits}f} | {theirs.get(k, float('nan')):.{digits}f} |", flush=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--nodes", type=int, default=13752, help="node graph size (Amazon-Computers)")
  p.add_argument("--graphs", type=int, default=128, help="graphs per graph-task batch")
  p.add_argument("--users", type=int, default=6034)
  p.add_argument("--items", type=int, default=3953)
  p.add_argument("--mem_users", type=int, default=10_000_000)
  p.add_argument("--mem_items", type=int, default=1_000_000)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--n2_official", default="")
  p.add_argument("--dpcml_official", default="")
  p.add_argument("--pyg_site", default="")
  p.add_argument("--outlier_samples", type=int, default=4485, help="RCPMOD samples (Scene-15)")
  p.add_argument("--outlier_epochs", type=int, default=4)
  p.add_argument("--rcpmod_official", default="")
  p.add_argument("--parts", default="n2,dpcml,rcpmod,memory")
  args = p.parse_args()
  import jax
  parts = args.parts.split(",")
  if "memory" in parts:  # simulated devices; the trainer (RCPMOD) would spread its batch over them
    jax.config.update("jax_num_cpu_devices", 8)
  print(f"device: {jax.devices()[0].device_kind}", flush=True)
  if "n2" in parts:
    ours, theirs = n2_ours(args), n2_official(args)
    print(f"\nN² training step (s), {args.nodes}-node graph / {args.graphs} graphs of 10-30 nodes")
    _print_side_by_side("task", ours, theirs, digits=3)
  if "dpcml" in parts:
    ours, theirs = dpcml_ours(args), dpcml_official(args)
    print(f"\nDPCML2, {args.users} users x {args.items} items, C 5, d 100, batch 256, 10 negatives")
    _print_side_by_side("metric", ours, theirs, digits=2)
  if "rcpmod" in parts:
    ours, theirs = rcpmod_ours(args), rcpmod_official(args)
    print(f"\nRCPMOD, two views of {args.outlier_samples} samples (20 / 12 dims), encoders "
          f"[F, 1024, 1024, 64], batch 256, every term on")
    _print_side_by_side("time (s)", ours, theirs, digits=3)
  if "memory" in parts:
    print(f"\nDPCML train step, {args.mem_users:,} users x {args.mem_items:,} items (C 5, d 100),"
          f" tables sharded by rows: compiled memory per device (GiB)")
    print("| devices | arguments | temporaries |\n|---:|---:|---:|")
    for n, a, t in memory(args):
      print(f"| {n} | {a:.2f} | {t:.2f} |", flush=True)


if __name__ == "__main__":
  main()

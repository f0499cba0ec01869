"""Train-step throughput of audio-visual methods at CREMA-D shapes (audio [B, 257, 188, 1], one
224 x 224 frame, two ResNet-18 encoders, concat fusion), fp32 and bf16 compute.

    python benchmarks/multimodal.py --batch=64 --steps=20                # on a GPU
    python benchmarks/multimodal.py --batch=2 --steps=3 --methods=vanilla,ogm_ge   # CPU smoke size

The step mirrors the trainer's (ml_pipelines/train.py): one forward, a VJP for the loss, the task's
tx_args, `tx.update(..., grad_fn=...)`, apply updates; jitted, params donated. Configs are
`configs/multimodal/<method>.py:cremad,concat`. Samples/s excludes the first (compiling) step.

The authors' side runs when their code is cloned into third_party/OGM-GE_CVPR2022 (git-ignored,
never committed): their `AVClassifier` with `weight_init`, SGD (momentum 0.9, wd 1e-4) and their
own `train_epoch` from main.py, unmodified, for vanilla (`--modulation Normal`) and OGM-GE
(`OGM_GE`, alpha 0.8), on the same batch; eager, and with `--torch_compile` also `torch.compile`d;
bfloat16 rows wrap `train_epoch` in `torch.autocast`. PyTorch runs on CUDA when present, else CPU.

    git clone https://github.com/GeWu-Lab/OGM-GE_CVPR2022 third_party/OGM-GE_CVPR2022
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
import optim
from ml_pipelines.trainer import config as config_lib
from ml_pipelines import tasks
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_step(config, dtype):
  task = tasks.get("multimodal")(config)
  kw = {k: v for k, v in config.model.items() if k != "name"}
  model = models.build(config.model.name, dtype=dtype, rngs=nnx.Rngs(0), **kw)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  tx = optim.build(config.optimizer, int(config.total_steps))
  opt_state = tx.init(params)

  def step_fn(params, rest, opt_state, batch, step):
    rng = jax.random.fold_in(jax.random.key(0), step)

    def loss_fn(p, r):
      m = nnx.merge(graphdef, p, r)
      loss, aux = task.loss(m, batch, rng, None, step)
      return loss, (aux, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param))))

    def outputs(p):
      loss, (aux, new_rest) = loss_fn(p, rest)
      return (loss, aux.get("grad_terms", {})), (aux, new_rest)

    (loss, terms), vjp, (aux, new_rest) = jax.vjp(outputs, params, has_aux=True)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, terms)
    (grads,) = vjp((jnp.ones_like(loss), zeros))
    extra = dict(aux.get("tx_args", {}))
    if terms:
      extra["term_grads"] = {n: vjp((jnp.zeros_like(loss), {**zeros, n: jnp.ones_like(t)}))[0]
                             for n, t in terms.items()}
    grad_fn = lambda p: jax.grad(lambda q: loss_fn(q, rest)[0])(p)
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn, step=step, rng=rng,
                                   **extra)
    return optax.apply_updates(params, updates), new_rest, opt_state, loss

  return jax.jit(step_fn, donate_argnums=(0, 1, 2)), params, rest, opt_state


def bench(method, batch, steps, dtype, width):
  c = config_lib.load(os.path.join(ROOT, f"configs/multimodal/{method}.py:cremad,concat"))
  c.model.width = width
  fn, params, rest, opt_state = make_step(c, dtype)
  r = np.random.default_rng(0)
  b = {"audio": jnp.asarray(r.standard_normal((batch, 257, 188, 1)), jnp.float32),
       "visual": jnp.asarray(r.standard_normal((batch, 1, 224, 224, 3)), jnp.float32),
       "label": jnp.asarray(r.integers(0, 6, batch), jnp.int32)}
  t = time.perf_counter()
  params, rest, opt_state, loss = fn(params, rest, opt_state, b, jnp.int32(0))
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for i in range(steps):
    params, rest, opt_state, loss = fn(params, rest, opt_state, b, jnp.int32(i + 1))
  jax.block_until_ready(loss)
  return batch * steps / (time.perf_counter() - t), compile_s


OFFICIAL = os.path.join(ROOT, "third_party", "OGM-GE_CVPR2022")
OFFICIAL_MODULATION = {"vanilla": "Normal", "ogm_ge": "OGM_GE"}


@contextlib.contextmanager
def official_code():
  """Yields the official `main` module, its `models` and `utils` packages installed under their own
  names for the duration (torch.compile re-imports them by name); ours are restored afterwards. Its
  dataset readers (librosa, torchvision) and tensorboard are imported at module level but not used by
  `train_epoch`: they are stubbed."""
  import sys
  import types
  ours = lambda n: n.split(".")[0] in ("models", "utils", "main", "dataset") or n == "torch.utils.tensorboard"
  saved = {n: sys.modules.pop(n) for n in list(sys.modules) if ours(n)}
  stubs = {"dataset": [], "dataset.CramedDataset": ["CramedDataset"],
           "dataset.VGGSoundDataset": ["VGGSound"], "dataset.dataset": ["AVDataset"],
           "torch.utils.tensorboard": ["SummaryWriter"]}
  try:
    for name, attrs in stubs.items():
      sys.modules[name] = types.ModuleType(name)
      for a in attrs:
        setattr(sys.modules[name], a, None)
    for pkg in ("models", "utils"):
      sys.modules[pkg] = types.ModuleType(pkg)
      sys.modules[pkg].__path__ = [os.path.join(OFFICIAL, pkg)]
    sys.path.insert(0, OFFICIAL)
    import main as official
    yield official
  finally:
    if OFFICIAL in sys.path:
      sys.path.remove(OFFICIAL)
    for n in [n for n in sys.modules if ours(n)]:
      del sys.modules[n]
    sys.modules.update(saved)


def bench_official(official, method, batch, steps, bf16, compiled):
  """Samples/s of the authors' `train_epoch` over `steps` copies of one batch (after 2 warm-up steps)."""
  import argparse as ap
  import torch
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  args = ap.Namespace(dataset="CREMAD", fusion_method="concat", modulation=OFFICIAL_MODULATION[method],
                      alpha=0.8, modulation_starts=0, modulation_ends=50, use_tensorboard=False)
  torch.manual_seed(0)
  net = official.AVClassifier(args)
  net.apply(official.weight_init)
  net = net.to(device)
  if compiled:
    net = torch.compile(net)
  model = torch.nn.DataParallel(net)  # train_epoch reads model.module, as in their main
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
  scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 70, 0.1)
  r = np.random.default_rng(0)
  one = (torch.as_tensor(r.standard_normal((batch, 257, 188)), dtype=torch.float32),
         torch.as_tensor(r.standard_normal((batch, 3, 1, 224, 224)), dtype=torch.float32),
         torch.as_tensor(r.integers(0, 6, batch)))

  def run(n):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      official.train_epoch(args, 0, model, device, [one] * n, optimizer, scheduler)
    if device.type == "cuda":
      torch.cuda.synchronize()

  import io
  with contextlib.redirect_stdout(io.StringIO()):  # train_epoch prints "Start training ..."
    run(2)
    t = time.perf_counter()
    run(steps)
  return batch * steps / (time.perf_counter() - t)


def bench_official_table(official, a):
  import torch
  print(f"\nofficial OGM-GE code, PyTorch {torch.__version__} on "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, batch {a.batch}, "
        f"{a.steps} timed steps")
  print("| method | dtype | official eager samples/s |" + (" official torch.compile samples/s |"
                                                          if a.torch_compile else ""))
  print("|---|---|---|" + ("---|" if a.torch_compile else ""))
  for method in [m for m in a.methods.split(",") if m in OFFICIAL_MODULATION]:
    for dt in a.dtypes.split(","):
      bf16 = dt == "bfloat16"
      cells = [bench_official(official, method, a.batch, a.steps, bf16, False)]
      if a.torch_compile:
        cells.append(bench_official(official, method, a.batch, a.steps, bf16, True))
      print(f"| {method} | {dt} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--methods", default="vanilla,ogm_ge,amss,mie")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--torch_compile", action="store_true", help="also time the official code compiled")
  a = p.parse_args()
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), batch {a.batch}, "
        f"{a.steps} timed steps, ResNet-18 width {a.width}")
  print("| method | dtype | samples/s | first step (compile) s |\n|---|---|---|---|")
  for method in a.methods.split(","):
    for dt in a.dtypes.split(","):
      sps, comp = bench(method, a.batch, a.steps, jnp.dtype(dt), a.width)
      print(f"| {method} | {dt} | {sps:.2f} | {comp:.1f} |", flush=True)
  if not os.path.isfile(os.path.join(OFFICIAL, "main.py")):
    print("official PyTorch comparison skipped: third_party/OGM-GE_CVPR2022 is not present")
    return
  with official_code() as official:
    bench_official_table(official, a)


if __name__ == "__main__":
  main()

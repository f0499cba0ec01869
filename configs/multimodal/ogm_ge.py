"""OGM-GE (Peng et al., CVPR 2022, Eqs. 8-10): on-the-fly gradient modulation + Gaussian noise
(optim/ogm_ge.py). Official recipe: SGD lr 1e-3, momentum 0.9, wd 1e-4 on every parameter (BatchNorm
included, as main.py's `model.parameters()`), StepLR(70, 0.1), 100 epochs,
batch 64, modulation during epochs 0..50; alpha 0.8 on CREMA-D, 0.1 elsewhere (VGGSound's value).

    python -m ml_pipelines.train --config=configs/multimodal/ogm_ge.py:demo,concat \
        --workdir=/tmp/ogm
"""
from configs.multimodal.common import base_config, parse, steps


def get_config(arg=None):
  c = base_config(arg, lr=1e-3, epochs=100, step_epochs=70, transforms=("ogm_ge",))
  dataset, _ = parse(arg)
  end = -1 if dataset == "demo" else steps(c, 51)
  c.optimizer.ogm_ge = dict(alpha=0.8 if dataset in ("cremad", "demo") else 0.1,
                            variant="ogm_ge", coefficient="tanh", start_step=0, end_step=end)
  return c

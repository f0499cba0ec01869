"""UMT, uni-modal teachers (Du et al., "On Uni-Modal Feature Learning in Supervised Multi-Modal
Learning", ICML 2023, Sec. 4): `CE(fused) + 10 * sum_m MSE(phi_m, phi_m^teacher)`, each encoder
distilled from a frozen unimodal model of the same architecture. Training recipe as OGM-GE.

Train the two teachers first (the other modality muted), then UMT:

    python -m ml_pipelines.train --config=configs/multimodal/vanilla.py:demo,concat \
        --config.task.mute_modality=visual --workdir=workdirs/av_demo_audio_only
    python -m ml_pipelines.train --config=configs/multimodal/vanilla.py:demo,concat \
        --config.task.mute_modality=audio --workdir=workdirs/av_demo_visual_only
    python -m ml_pipelines.train --config=configs/multimodal/umt.py:demo,concat --workdir=/tmp/umt

Teacher workdirs default to `workdirs/<dataset>_{audio,visual}_only`; change them with
`--config.task.umt_teachers.audio=DIR` (and `.visual`).
"""
from configs.multimodal.common import DATASETS, base_config, parse


def get_config(arg=None):
  dataset, _ = parse(arg)
  name = DATASETS[dataset][0]["name"]
  return base_config(arg, lr=1e-3, epochs=100, step_epochs=70, task=dict(
      umt_weight=10.0,
      umt_teachers={m: f"workdirs/{name}_{m}_only" for m in ("audio", "visual")}))

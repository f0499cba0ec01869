"""G-Blending (Wang, Tran, Feiszli, CVPR 2020, Eq. 4): weighted sum of the audio, visual and fused
heads' losses. The weights are fixed here (set them from `losses.balancing.gblend_weights` of a
super-epoch's train/validation losses, Eq. 6); equal weights by default.
"""
from configs.multimodal.common import base_config


def get_config(arg=None):
  return base_config(arg, lr=1e-3, epochs=100, step_epochs=70,
                     task=dict(gblending_weights=(1 / 3, 1 / 3, 1 / 3)))

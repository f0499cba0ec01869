"""Stable Diffusion 1.5 in Flax NNX (UNet with activation taps, VAE, ControlNet, noise schedules)
and the importer from the diffusers safetensors layout. See `models/diffusion/unet.py`."""
from models.diffusion import controlnet, heads, unet, vae  # noqa: F401  (registers the models)

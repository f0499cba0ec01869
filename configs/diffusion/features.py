"""Diffusion feature extraction (`ml_pipelines/jobs/diffusion_features.py`): SD-1.5 activations of
a folder of images, one feature variant per run, written as float16 ArrayRecord.

    python -m ml_pipelines.jobs.diffusion_features \
        --config=configs/diffusion/features.py:horse21_practical --out=/data/feats/horse21_plain \
        --config.weights_dir=/models/sd15 --config.images_dir=/data/horse_21/real/train

Arguments: `<dataset>_<set>` with a dataset of `PROMPTS` and a set of
`models.diffusion.activation_sets` (practical, legacy, amalgamation).

Variant switches (the content-shift paper's techniques; each run is one variant):
- `prompt`: the prompt; `fine_grained_prompt()` gives the "high quality, ..." form;
- `controlnet_dir` + `denoising_from=60`: ControlNet-canny (`lllyasviel/sd-controlnet-canny`), noise
  at 61 and PNDM steps with control down to t = 50;
- `lora` (+ `lora_scale`): a LoRA file merged into the UNet (or a `weights_dir` with a merged one);
- `seed`: the VAE-sample / noise seed (a second seed is the re-sampling variant).
"""
import ml_collections

PROMPTS = {  # the official simple prompts
    "horse21": "a horse", "bedroom28": "a bedroom", "ffhq34": "a human face",
    "cat15": "a cat", "celeba19": "a human face", "spair": "a photo",
    # the GATE semantic-segmentation configs' prompts
    "ade20k": "a highly realistic photo of the real world. It can be an indoor scene, or an "
              "outdoor scene, or a photo of nature. high quality.",
    "cityscapes": "An urban street scene with multiple lanes, various buildings, traffic lights, "
                  "cars in the lanes, and pedestrians, highly realistic.",
}
FINE_GRAINED = ", high quality, best quality, highly realistic, masterpiece"


def fine_grained_prompt(prompt: str) -> str:
  return prompt + FINE_GRAINED


def get_features_config(arg: str = "horse21_practical") -> ml_collections.ConfigDict:
  dataset, _, activation_set = arg.rpartition("_")
  c = ml_collections.ConfigDict()
  c.weights_dir = ""            # diffusers layout: unet/, vae/, text_encoder/
  c.images_dir = ""             # *.png / *.jpg; a label <name>.npy beside an image is kept
  c.split = "train"
  c.img_size = 512
  c.batch_size = 8              # global, split over the devices
  c.activation_set = activation_set
  c.attention = ""              # e.g. "up_cross"; empty: the set's default
  c.t = 50
  c.prompt = PROMPTS.get(dataset, "")
  c.controlnet_dir = ""
  c.denoising_from = 0
  c.control_scale = 1.0
  c.lora = ""
  c.lora_scale = 1.0
  c.seed = 0
  c.dtype = "bfloat16"          # compute dtype of the networks; taps are stored as float16
  return c

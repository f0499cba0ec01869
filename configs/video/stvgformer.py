"""STVGFormer spatio-temporal video grounding (Lin et al., arXiv 2207.02756):
`stvgformer.py:<dataset>[,variant]`, variant `both` (static + dynamic + interaction, default),
`no_interaction`, `static` or `dynamic` (one branch).

    python -m ml_pipelines.train --config=configs/video/stvgformer.py:moving_shapes_hard \
        --workdir=/tmp/stvg

Datasets: `moving_shapes` / `moving_shapes_hard` (embedded; hard: two look-alike objects per
video, told apart only by their motion; tiny towers from scratch) and `hcstvg` (v1), `hcstvg2`,
`vidstg` (VidSTG's 80,684 training sentences, declarative and interrogative, 10 epochs as
TubeDETR's default; records of `prep.video --grounding=<dataset>`, VidSTG from TubeDETR's
preprocessed annotation files). Only the abstract and Figure 1 of the report were readable:
the layer design and every default below are [inferred] from TubeDETR (antoyang/TubeDETR `main.py`:
loss weights 5 / 2 / 10, sigma 1, lr 5e-5 with the backbones at 1e-5, 5 fps, at most 200 frames,
batch 1 per GPU, 40 epochs on HC-STVG v1, 20 on v2, hidden 256, 8 heads, 6 encoder and decoder
layers, dropout 0.1). The pretrained towers (CLIP ViT-B/32's image and text towers,
`clip_vit_b32_visual` / `clip_vit_b32_text`) train at 1e-5 (`optimizer.group_optimizers`) and load
from an open_clip / OpenAI file: `--config.init_from.path=ViT-B-32.pt` (the rest is new).
"""
import ml_collections

from configs.video import common

# train sentences, epochs (TubeDETR's README / main.py default), evaluation split
REAL = {"hcstvg": (4500, 40, "test"), "hcstvg2": (10131, 20, "val"),
        "vidstg": (80684, 10, "val")}
VARIANTS = {"both": dict(branches="both", interaction=True),
            "no_interaction": dict(branches="both", interaction=False),
            "static": dict(branches="static"), "dynamic": dict(branches="dynamic")}


def get_config(arg=None):
  parts = (arg or "moving_shapes_hard").split(",")
  dataset, variant = parts[0], (parts[1] if len(parts) > 1 else "both")
  if variant not in VARIANTS:
    raise ValueError(f"Unknown STVGFormer variant {variant!r}; known: {sorted(VARIANTS)}.")
  c = ml_collections.ConfigDict()
  if dataset.startswith("moving_shapes"):
    common.run_keys(c, total_steps=800, batch_size=32, eval_batch_size=100, eval_every=800)
    c.data = ml_collections.ConfigDict(dict(
        name="moving_shapes_grounding", hard=dataset.endswith("_hard"), train_split="train",
        eval_split="test"))
    model = dict(vision=common.TINY_VISION, text=common.TINY_TEXT, dim=128, heads=4,
                 static_layers=1, dynamic_layers=1, decoder_layers=2, dropout=0.0, max_frames=8)
    # Towers from scratch: their learned position embeddings (the image tower's `pos_embed`, the
    # model's `time_embed`) start at std 0.02, about 2 % of a token, so at the shared rate every
    # box stays the mean box for hundreds of steps; at 1e-2 the boxes start to localise.
    opt = dict(name="adamw", learning_rate=5e-4, weight_decay=1e-4, schedule="cosine",
               warmup_steps=50, clip_grad_norm=0.1,
               param_groups={"positions": r"(^|/)(pos_embed|time_embed)(/|$)"},
               group_optimizers={"positions": {"learning_rate": 1e-2}})
  elif dataset in REAL:
    n, epochs, eval_split = REAL[dataset]
    steps = n * epochs // 8
    common.run_keys(c, total_steps=steps, batch_size=8, eval_batch_size=8, eval_every=steps // 10)
    c.data = ml_collections.ConfigDict(dict(
        name=dataset, data_dir=f"data/{dataset}", num_frames=200, tokenizer="clip", max_words=77,
        train_split="train", eval_split=eval_split))
    model = dict(vision=dict(name="clip_vit_b32_visual"), text=dict(name="clip_vit_b32_text"),
                 dim=256, heads=8, static_layers=6, dynamic_layers=6, decoder_layers=6,
                 dropout=0.1, max_frames=200)
    opt = dict(name="adamw", learning_rate=5e-5, weight_decay=1e-4, schedule="step",
               decay_boundaries=(0.25,), decay_factor=0.1, clip_grad_norm=0.1,
               param_groups={"towers": r"^(vision|text)/"},
               group_optimizers={"towers": {"learning_rate": 1e-5}})
    c.init_from = ml_collections.ConfigDict(dict(path="", converter="open_clip",
                                                 skip=r"^(?!vision/|text/)"))
  else:
    raise ValueError(f"Unknown STVG dataset {dataset!r}; known: moving_shapes, "
                     f"moving_shapes_hard, {sorted(REAL)}.")
  c.model = ml_collections.ConfigDict(dict(name="stvgformer", **model, **VARIANTS[variant]))
  # moving_shapes: start/end weight 2 (TubeDETR: 10), so that the box terms lead while the towers
  # learn from scratch (the moments are learnt either way).
  sted_weight = 2.0 if dataset.startswith("moving_shapes") else 10.0
  c.task = ml_collections.ConfigDict(dict(name="grounding", box_l1_weight=5.0, giou_weight=2.0,
                                          sted_weight=sted_weight, sted_sigma=1.0))
  c.optimizer = ml_collections.ConfigDict({"param_groups": {}, **opt})
  return c

"""TMVM text-video retrieval (Lin et al., NeurIPS 2022, arXiv 2209.13307):
`tmvm.py:<dataset>[,K][,lambda]`.

    python -m ml_pipelines.train --config=configs/video/tmvm.py:moving_shapes,4,1.0 \
        --workdir=/tmp/tmvm
    python -m ml_pipelines.train --config=configs/video/tmvm.py:moving_shapes,meanp \
        --workdir=/tmp/c4c

K = `meanp` is CLIP4Clip's mean-pooled baseline (one prototype, uniform masks over the frames'
class tokens). Datasets: `moving_shapes` (embedded; tiny towers from scratch,
configs/video/common.py) and `msrvtt` (1k-A), `didemo` (paragraphs), `lsmdc`, `msvd` from
`prep.video` records (`data_dir`) and their caption files (`ann_dir`).

None of these defaults could be confirmed from the paper's text (only its abstract was readable):
K = 4, lambda = 1 and the variance form are [inferred]; the real-data recipe is CLIP4Clip's MSR-VTT
one (ArrowLuo/CLIP4Clip README: 12 frames, 32 words, batch 128, lr 1e-4, 5 epochs, cosine with
10% warm-up, CLIP ViT-B/32). As CLIP4Clip (`coef_lr` 1e-3), the pretrained CLIP towers and
CLIP's logit scale train at lr 1e-7 and the new layers (the mask head) at 1e-4:
`optimizer.group_optimizers`. Real-data towers are CLIP ViT-B/32's image and text towers
(`clip_vit_b32_visual` / `clip_vit_b32_text`, ending in CLIP's projections, so `project=False`),
loaded from an open_clip / OpenAI file with the `open_clip` converter:
`--config.init_from.path=ViT-B-32.pt` (the mask head is new: `init_from.skip`).
"""
import ml_collections

from configs.video import common

CLIP_PARAMS = r"^(vision/|text/|logit_scale$)"  # the pretrained parameters (1e-7)
REAL = {"msrvtt": 9000 * 20, "didemo": 8395, "lsmdc": 101079, "msvd": 1200 * 40}  # train pairs


def parse(arg):
  parts = (arg or "moving_shapes").split(",")
  dataset = parts[0]
  if dataset != "moving_shapes" and dataset not in REAL:
    raise ValueError(f"Unknown TMVM dataset {dataset!r}; known: moving_shapes, {sorted(REAL)}.")
  k = parts[1] if len(parts) > 1 else "4"
  lam = float(parts[2]) if len(parts) > 2 else 1.0
  return dataset, k, lam


def get_config(arg=None):
  dataset, k, lam = parse(arg)
  meanp = k == "meanp"
  c = ml_collections.ConfigDict()
  if dataset == "moving_shapes":
    common.run_keys(c, total_steps=600, batch_size=64, eval_batch_size=100, eval_every=600)
    c.data = ml_collections.ConfigDict(dict(name="moving_shapes_retrieval", train_split="train",
                                            eval_split="test"))
    model = dict(vision=common.TINY_VISION, text=common.TINY_TEXT, embed_dim=128)
    # 1e-3 collapses the towers trained from scratch (every embedding the same, loss = log B)
    opt = dict(name="adamw", learning_rate=5e-4, weight_decay=0.01, schedule="cosine",
               warmup_steps=50)
  else:
    steps = 5 * REAL[dataset] // 128
    common.run_keys(c, total_steps=steps, batch_size=128, eval_batch_size=64,
                    eval_every=steps // 5)
    c.data = ml_collections.ConfigDict(dict(
        name=dataset, data_dir=f"data/{dataset}", ann_dir=f"data/{dataset}/ann", num_frames=12,
        max_words=32 if dataset != "didemo" else 64, tokenizer="clip", train_sampling="uniform",
        pad_short=True, train_split="train", eval_split="test"))
    model = dict(vision=dict(name="clip_vit_b32_visual"), text=dict(name="clip_vit_b32_text"),
                 embed_dim=512, project=False)
    opt = dict(name="adam", learning_rate=1e-4, schedule="cosine", warmup_steps=steps // 10,
               param_groups={"clip": CLIP_PARAMS},
               group_optimizers={"clip": {"learning_rate": 1e-7}})
    c.init_from = ml_collections.ConfigDict(dict(path="", converter="open_clip",
                                                 skip="^mask_head/"))
  c.model = ml_collections.ConfigDict(dict(
      name="tmvm", num_prototypes=1 if meanp else int(k), uniform_masks=meanp, **model))
  c.task = ml_collections.ConfigDict(dict(name="video_retrieval", variance_weight=lam,
                                          diversity="variance"))
  c.optimizer = ml_collections.ConfigDict({"param_groups": {}, **opt})
  return c

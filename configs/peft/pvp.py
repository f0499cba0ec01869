"""PVP (TAI++ / PVP, Xu et al., IJCAI 2024, arXiv 2405.06926; code Jinx630/Pseudo-Visual-Prompt):
two stages of one run on a frozen CLIP RN50, trained on sentences only, zero-shot multi-label mAP.

  stage "pretrain" (stage 1): pseudo-visual prompts P, Q only; SGD lr 0.1, momentum 0.9, wd 5e-4,
      cosine, one warm-up epoch at constant lr 1.0 (Dassl's constant warm-up); the code's
      `--pre-epoch 40` checkpoint feeds stage 2, so stage 1 here is 40 epochs.
  stage "finetune" (stage 2): text prompts + image prompts at lr 5e-5 (warm-up at the same rate),
      the dual adapter at lr 1e-3 after a constant 5e-3 warm-up epoch (its own optimizer:
      `optimizer.group_optimizers`), 20 epochs, cosine. Batch 512 in both (the scripts').

Args: `coco` (default), `voc`, `nuswide`, `digits` (embedded demo data with the tiny CLIP; 6 + 6
epochs of the 143 shipped sentences plus templates, with rates scaled up for ~100 steps: stage 1 at
100 with weight decay 5e-7 (the same decay per step as 5e-4 at lr 0.1), stage 2 prompts at 2e-3 and
adapters at 1e-2 after a 5e-2 warm-up epoch).
Real data: the sentences are a file you provide, one per line (`--config.data.sentences=FILE`; the
official runs use 500k ChatGLM-6B sentences for stage 1 and 200k for stage 2, or COCO captions),
OpenAI's RN50 weights through `--config.init_from.path=RN50.pt` (the TorchScript release or an
open_clip state dict; converter `open_clip`), TFDS `coco/2014` / `voc/2007` or the NUS-WIDE
directory under `--config.data.data_dir`:

    python -m ml_pipelines.train --config=configs/peft/pvp.py:coco --workdir=workdirs/pvp_coco \\
        --config.data.sentences=pretrain_50w_coco_voc.txt --config.init_from.path=RN50.pt

The text-prompt-only baseline (TaI-DPT) is `--config.task.stage=text_only` with one stage:
`configs/peft/pvp.py:coco,text_only`.
"""
import ml_collections

from ml_pipelines.data.multilabel import CLASS_NAMES

EPOCH_SENTENCES = {"coco": 500_000, "voc": 500_000, "nuswide": 500_000}
DATA = {"coco": ("pvp_coco2014", "validation"), "voc": ("pvp_voc2007", "test"),
        "nuswide": ("pvp_nuswide", "test"), "digits": ("pvp_digit_scenes", "test")}
TRAINABLE = {"pretrain": r"^image_prompts",
             "finetune": r"^(image_prompts|ctx|text_adapter|image_adapter)",
             "text_only": r"^ctx"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "coco").split(",")
  dataset, text_only = parts[0], "text_only" in parts[1:]
  embedded = dataset == "digits"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 64 if embedded else 512
  c.eval_batch_size = 100 if embedded else 64
  sentences = 143 + 10 * 40 if embedded else EPOCH_SENTENCES[dataset]
  epoch = max(sentences // c.batch_size, 1)
  pre_epochs, fine_epochs = (6, 6) if embedded else (40, 20)
  c.log_every = 20 if embedded else 100
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()

  name, eval_split = DATA[dataset]
  clip = (dict(name="clip_tiny_rn", embed_dim=32, vision_width=8, text_width=32, text_layers=2,
               vision_head_width=32) if embedded else dict(name="clip_rn50"))
  c.model = ml_collections.ConfigDict(dict(
      name="pvp", clip=clip, prompt_size=64 if embedded else 224, n_ctx=4 if embedded else 16,
      class_names=CLASS_NAMES[name]))
  c.data = ml_collections.ConfigDict(dict(
      name=name, train_split="train", eval_split=eval_split, sentences="", synonyms="",
      template_copies=40 if embedded else 200, context_length=77,
      image_size=64 if embedded else (448 if dataset == "coco" else 224), data_dir=""))
  c.task = ml_collections.ConfigDict(dict(name="pvp", stage="pretrain"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
      warmup_steps=epoch, warmup_lr=1.0, trainable=TRAINABLE["pretrain"],
      # The frozen CLIP stays in eval mode as in the code: its BatchNorms use running statistics
      # (batch statistics over the class prompts would wash out what tells them apart).
      freeze_batch_stats=True))
  # OpenAI's CLIP weights (the demo passes its own tiny pretrained CLIP); prompts and adapters new.
  c.init_from = ml_collections.ConfigDict(dict(
      path="", converter="open_clip", skip=r"^(image_prompts|ctx|text_adapter|image_adapter)",
      strict=True))
  finetune_optimizer = dict(
      learning_rate=5e-5, warmup_lr=5e-5, warmup_steps=epoch,
      param_groups={"adapters": r"^(text_adapter|image_adapter)/"},
      group_optimizers={"adapters": dict(learning_rate=1e-3, warmup_lr=5e-3)})
  if text_only:
    c.task.stage = "text_only"
    c.optimizer.update(dict(learning_rate=5e-5 if not embedded else 2e-3, warmup_lr=None,
                            warmup_steps=0, trainable=TRAINABLE["text_only"]))
    c.total_steps = (pre_epochs + fine_epochs) * epoch
  else:
    pre, fine = pre_epochs * epoch, fine_epochs * epoch
    if embedded:  # ~100 steps instead of ~40k: rates scaled up (tried on the demo data)
      c.optimizer.update(dict(learning_rate=100.0, warmup_lr=100.0, weight_decay=5e-7))
      finetune_optimizer.update(learning_rate=2e-3, warmup_lr=2e-3, group_optimizers={
          "adapters": dict(learning_rate=1e-2, warmup_lr=5e-2)})
    c.stages = (
        dict(name="pretrain", steps=pre, trainable=TRAINABLE["pretrain"],
             task=dict(stage="pretrain")),
        dict(name="finetune", steps=fine, trainable=TRAINABLE["finetune"],
             task=dict(stage="finetune"), optimizer=finetune_optimizer),
    )
    c.total_steps = pre + fine
  c.eval_every = c.total_steps // 2
  c.checkpoint_every = epoch
  return c

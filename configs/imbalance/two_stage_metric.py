"""Two-stage class-imbalance recipe with metric learning in stage 1 (Zeng et al., arXiv 2207.06975;
[inferred] formulation, see ml_pipelines/tasks/imbalance.py) and its baselines.

    python -m ml_pipelines.train --config=configs/imbalance/two_stage_metric.py:two_stage_triplet \
        --workdir=/tmp/lt_triplet
    arg: METHOD[,DATASET]. METHOD: ce (one stage), ce_reweight (one stage, class-balanced CE
    weights), two_stage (CE -> cRT), two_stage_triplet (CE + batch-hard triplet -> cRT),
    two_stage_center (CE + class-centre triplet -> cRT), two_stage_supcon (CE + SupCon -> cRT);
    add `--config.task.adjust=tau_norm` or `logit_adjust` for the post-hoc options.
    DATASET: digits (embedded long-tailed digits, imbalance ratio 20, tail = classes 7-9, default),
    isic2018 (Skin7 / HAM10000: the ISIC 2018 Task 3 CSV layout of
    ml_pipelines/data/continual_medical.py, train on Training, evaluate on Validation; use
    --config.data.eval_split=test when the Test ground truth is there; ResNet-18), chest_xray
    (class-folder layout, ResNet-18); pretrained weights via --config.init_from.path (timm
    resnet18.tv_in1k).
Stage 1 of the metric variants draws P classes x 4 images per batch (`pk` sampler: every class
equally often, the class-balanced triplet sampling of PCCT); stage 2 trains only the re-initialised
classifier on class-balanced batches with frozen batch statistics.
"""
import ml_collections

METHODS = {
    "ce": dict(stage2=False),
    "ce_reweight": dict(stage2=False, reweight=True),
    "two_stage": dict(),
    "two_stage_triplet": dict(metric="batch_hard_triplet"),
    "two_stage_center": dict(metric="class_center_triplet"),
    "two_stage_supcon": dict(metric="supervised_contrastive"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  method, _, dataset = (arg or "two_stage_triplet").partition(",")
  dataset = dataset or "digits"
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; known: {sorted(METHODS)}.")
  spec = dict(METHODS[method])
  c = ml_collections.ConfigDict()
  c.seed = 0
  if dataset == "digits":
    num_classes, tail, steps1, steps2, lr = 10, (7, 8, 9), 300, 100, 3e-3
    c.batch_size, c.eval_batch_size = 32, 120
    c.model = ml_collections.ConfigDict(dict(name="incremental_net", backbone=dict(
        name="staged_cnn", in_channels=1, width=16, num_stages=3), num_classes=10))
    c.data = ml_collections.ConfigDict(dict(name="digits_long_tailed", imbalance_ratio=20.0,
                                            train_split="train", eval_split="test"))
  elif dataset in ("isic2018", "chest_xray"):
    # ISIC 2018 classes in the CSV's column order MEL, NV, BCC, AKIEC, BKL, DF, VASC: the tail
    # is AKIEC, DF, VASC (327, 115, 142 of the 10,015 training images).
    num_classes, tail = (7, (3, 5, 6)) if dataset == "isic2018" else (2, (0,))
    steps1, steps2, lr = 100 * 10015 // 64, 30 * 10015 // 64, 1e-3
    c.batch_size, c.eval_batch_size = 64, 128
    c.model = ml_collections.ConfigDict(dict(name="incremental_net", backbone=dict(
        name="resnet18"), num_classes=num_classes))
    if dataset == "isic2018":
      c.data = ml_collections.ConfigDict(dict(name="isic2018", data_dir="", image_size=224,
                                              train_split="train", eval_split="validation"))
    else:
      c.data = ml_collections.ConfigDict(dict(name="image_folder", data_dir="", image_size=224,
                                              train_split="train", eval_split="test"))
  else:
    raise ValueError(f"Unknown dataset {dataset!r}: digits, isic2018 or chest_xray.")
  c.log_every, c.keep_checkpoints, c.keep_period = 50, 2, 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ()
  stage2 = spec.pop("stage2", True)
  c.task = ml_collections.ConfigDict(dict(
      name="two_stage_metric", num_classes=num_classes, phase="features", metric="none",
      metric_weight=1.0, margin=0.3, temperature=0.1, reweight=False, adjust="none", tau=1.0,
      tail_classes=tail))
  c.task.update(spec)
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=lr, schedule="cosine",
                                               warmup_steps=0, weight_decay=0.0, transforms=()))
  first = dict(name="features", steps=steps1)
  if c.task.metric != "none":
    first["data"] = dict(sampler=dict(name="pk", k=4, label="label"))
  stages = [first]
  if stage2:
    stages.append(dict(name="classifier", steps=steps2, trainable=r"^fc/",
                       task=dict(phase="classifier"),
                       optimizer=dict(freeze_batch_stats=True, learning_rate=lr),
                       data=dict(sampler=dict(name="class_balanced", label="label"))))
  c.stages = tuple(stages)
  c.total_steps = sum(s["steps"] for s in stages)
  c.eval_every = c.total_steps
  c.checkpoint_every = c.total_steps
  return c

"""SNELL: sparse tuning with kernelized LoRA on a frozen ViT-B/16 (ImageNet-21k) (Shen et al. 2024,
"Expanding Sparse Tuning for Low Memory Usage", NeurIPS; github.com/ssfgunner/SNELL, its scripts/).

    python -m ml_pipelines.train --config=configs/peft/snell.py:cub,8 --workdir=/tmp/snell_cub \
        --config.init_from.path=ViT-B_16.npz          # the original in21k npz (converter vit_npz)
    python -m ml_pipelines.train --config=configs/peft/snell.py:vtab_cifar,32 --workdir=/tmp/sv \
        --config.data.data_dir=data/vtab-1k --config.init_from.path=ViT-B_16.npz
    # timm's vit_base_patch16_224.orig_in21k safetensors instead:
    #   --config.init_from.path=model.safetensors --config.init_from.converter=timm_vit
    # LoRA-8 baseline: --config.model.adapter.kind=lora; KLoRA: --config.model.adapter.sparsity=0

arg: `<set>[,<rank>]` with set one of cub, nabirds, flowers, dogs, cars (FGVC, VPT json splits; rank
8 / 16 / 32, default 8), vtab_<task> (VTAB-1k, rank 32 as the paper) or digits (embedded, a tiny
ViT from scratch on digits_rgb: for tests and smoke runs). The per-set learning rate, weight decay,
sparsity s (`init_thres`), batch size and epochs are the official scripts'.

Recipe (train.py of the code): AdamW lr as the table, weight decay on the head kernel and the
adapter factors only; cosine schedule with 10 warm-up epochs down to a 1e-5 floor (timm warms
up from 1e-6, ours from 0); no label smoothing, mixup or cutmix; fp32; trainable = the
adapters, the new head and the class token (the code's `freeze_stages`); backbone drop-path 0.1,
adapter dropout and drop-path 0.1. The code reports the best test accuracy over evaluations; the
trainer logs every evaluation, and `eval_every` here evaluates every 10 epochs as the code does.
"""
import ml_collections

from ml_pipelines.data.fgvc import NUM_CLASSES as FGVC_CLASSES
from ml_pipelines.prep.vtab import TASKS as VTAB_CLASSES, check_task

# set: (learning rate, {rank: weight decay}, {rank: sparsity s}); batch 32, 100 epochs; s = 0 is
# the code's KLoRA. [code: scripts/fgvc/snell{8,16,32}/vit_*_snell.sh]
FGVC = {
    "cub": (1e-3, {8: 0.01, 16: 0.01, 32: 0.01}, {8: 0.3, 16: 0.3, 32: 0.3}),
    "nabirds": (5e-4, {8: 0.01, 16: 0.01, 32: 0.01}, {8: 0.1, 16: 0.1, 32: 0.1}),
    "flowers": (1e-3, {8: 0.01, 16: 0.01, 32: 0.01}, {8: 0.6, 16: 0.6, 32: 0.8}),
    "dogs": (3e-4, {8: 1e-3, 16: 1e-3, 32: 5e-3}, {8: 0.1, 16: 0.1, 32: 0.1}),
    "cars": (1e-3, {8: 0.01, 16: 0.01, 32: 0.01}, {8: 0.0, 16: 0.0, 32: 0.0}),
}
FGVC_TRAIN = {"cub": 5394, "nabirds": 21536, "flowers": 1020, "dogs": 10800, "cars": 7329}
# task: (batch, lr, weight decay, s, epochs), rank 32 [code: scripts/vtab/snell32/vit_*_snell.sh]
VTAB = {
    "caltech101": (16, 1e-3, 0.01, 0.4, 200), "cifar": (16, 1e-3, 0.01, 0.9, 200),
    "dtd": (64, 1e-3, 0.01, 0.995, 200), "oxford_flowers102": (32, 1e-3, 0.01, 0.9, 200),
    "oxford_iiit_pet": (32, 1e-3, 0.01, 0.5, 200), "svhn": (32, 1e-3, 0.01, 0.0, 200),
    "sun397": (32, 1e-3, 1e-3, 0.99, 200), "patch_camelyon": (16, 7e-4, 0.05, 0.15, 100),
    "eurosat": (16, 1e-3, 4e-4, 0.5, 100), "resisc45": (32, 1e-3, 0.01, 0.0, 100),
    "diabetic_retinopathy": (32, 1e-3, 0.05, 0.5, 100), "clevr_count": (16, 1e-3, 0.01, 0.1, 100),
    "clevr_dist": (16, 1e-3, 1e-3, 0.74, 100), "dmlab": (8, 1e-3, 1e-4, 0.0, 100),
    "kitti": (8, 1e-3, 0.01, 0.37, 100), "dsprites_loc": (16, 1e-3, 0.01, 0.0, 100),
    "dsprites_ori": (8, 1e-3, 0.01, 0.88, 100), "smallnorb_azi": (16, 1e-3, 0.01, 0.0, 100),
    "smallnorb_ele": (16, 1e-3, 1e-3, 0.08, 200),
}
VTAB_TRAIN = 1000  # train800val200
TRAINABLE = r"(adapter_|^head/|^cls_token$)"
DECAYED = r"(kernel|adapter_\w+/[ab])$"  # the code: no decay for 1-D params, biases, cls_token


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  name, *rest = (arg or "cub").split(",")
  rank = int(rest[0]) if rest else (32 if name.startswith("vtab_") else 8)
  c = ml_collections.ConfigDict()
  c.seed = 0
  embedded = name == "digits"
  if name in FGVC:
    lr, wds, ss = FGVC[name]
    if rank not in wds:
      raise ValueError(f"FGVC rank {rank}: the code has 8, 16, 32")
    batch, wd, s, epochs, n = 32, wds[rank], ss[rank], 100, FGVC_TRAIN[name]
    c.data = ml_collections.ConfigDict(dict(name="fgvc", dataset=name, source="manual",
                                            data_dir=f"data/fgvc/{name}", train_split="train",
                                            eval_split="test", image_size=224))
    num_classes = FGVC_CLASSES[name]
  elif name.startswith("vtab_"):
    task = check_task(name[len("vtab_"):])
    batch, lr, wd, s, epochs = VTAB[task]
    n = VTAB_TRAIN
    c.data = ml_collections.ConfigDict(dict(name="vtab", task=task, data_dir="data/vtab-1k",
                                            train_split="train800val200", eval_split="test",
                                            image_size=224))
    num_classes = VTAB_CLASSES[task]
  elif embedded:
    batch, lr, wd, s, epochs, n = 64, 1e-3, 0.01, 0.5, 10, 1437
    c.data = ml_collections.ConfigDict(dict(name="digits_rgb", train_split="train",
                                            eval_split="test", image_size=32, randaugment_ops=0))
    num_classes = 10
  else:
    raise ValueError(f"configs/peft/snell.py:{arg}: set one of {', '.join(FGVC)}, digits, or "
                     f"vtab_<task> with task one of {', '.join(VTAB)}")
  steps_per_epoch = max(n // batch, 1)
  c.batch_size = batch
  c.total_steps = epochs * steps_per_epoch
  c.eval_batch_size = 128 if embedded else 64
  c.log_every = 50
  c.eval_every = 10 * steps_per_epoch
  c.checkpoint_every = 10 * steps_per_epoch
  c.keep_checkpoints = 2
  c.keep_period = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  c.sharding_rules = ((r"(kernel|pos_embed)$", "fsdp"),)
  adapter = dict(kind="kernel", rank=rank, kernel="distance", sparsity=s, sparsify="code",
                 dropout=0.1, drop_path=0.1)
  model = dict(name="vit_b16", num_classes=num_classes, drop_path=0.1, dtype="float32",
               remat=False, adapter=adapter)
  if embedded:
    model.update(embed_dim=16, depth=2, num_heads=2, patch_size=8, img_size=32)
    adapter["rank"] = min(rank, 4)
  c.model = ml_collections.ConfigDict(model)
  c.task = ml_collections.ConfigDict(dict(name="classification", label_smoothing=0.0))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=lr, schedule="cosine",
      warmup_steps=min(10 * steps_per_epoch, c.total_steps // 10), end_factor=1e-5 / lr,
      weight_decay=wd,
      weight_decay_mask=DECAYED, trainable=TRAINABLE, transforms=()))
  c.ema_decay = 0.0
  c.init_from = ml_collections.ConfigDict(dict(
      path="", converter="vit_npz", skip=r"(adapter_|^head/)", strict=True))
  return c

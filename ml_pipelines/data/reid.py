"""Visible-infrared re-ID datasets (SGIEL's batches, `tasks.reid`).

Training examples are visible images; each is paired with an infrared image of the same identity
drawn by the example's generator (the code's sampler pairs the two modalities by position, 4 images
per identity and modality, with replacement), and both come with their body-shape maps:
`{image_vis, image_ir, shape_vis, shape_ir [H, W, 3] float32, label}`. With the `pk` sampler
(`k` = 4) a batch is the code's P identities x 4 pairs. Evaluation examples are every test image:
`{image, label, modality (0 visible, 1 infrared), camera, query, gallery_trials}`; the task ranks
the gallery for each query, once per gallery trial: bit t of `gallery_trials` marks the images of
trial t's gallery (SYSU-MM01's 10 random single-shot galleries; one trial elsewhere).

Train augmentation (the code's `data_loader.py` / `ChannelAug.py`): pad 10 + random crop +
horizontal flip for images and, drawn independently, for shape maps; ImageNet normalisation; then,
with `channel_augment` (default on), on the normalised visible image random erasing and, with
probability 1/2, the channel exchange, on the infrared image random erasing and `ChannelAdapGray`
(`augment_visible`, `augment_infrared`). Shape maps get no erasing or channel change.

Registered: `two_spectrum` (embedded synthetic identities, see `render_identities`),
`sysu_mm01`, `regdb` (the official directory layouts, `data_dir`; body-shape maps from `shape_dir`
with the same relative paths as PNG: SCHP parsings summed over head, torso and limbs, written by
`python -m ml_pipelines.prep.reid_shape_maps`; the authors distribute theirs as .npy arrays in the
pre-processed layout, which would need writing out as such PNGs first). Evaluation examples also carry `query` (1 for the query side).
An identity present in one modality only fails with its id named.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import augment
from ml_pipelines.data.imagenet import MEAN, STD


def normalise(image) -> np.ndarray:
  return ((np.asarray(image, np.float32) - MEAN) / STD).astype(np.float32)


def check_modalities(vis_labels, ir_labels, where: str) -> None:
  """Every identity must have images in both modalities (training pairs them)."""
  vis, ir = set(np.unique(vis_labels).tolist()), set(np.unique(ir_labels).tolist())
  if vis != ir:
    only_vis, only_ir = sorted(vis - ir)[:10], sorted(ir - vis)[:10]
    raise ValueError(f"{where}: identities missing from one modality: visible only {only_vis}, "
                     f"infrared only {only_ir}.")


def _pad_crop_flip(img, rng, pad: int = 10):
  h, w = img.shape[:2]
  p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
  y, x = rng.integers(0, 2 * pad + 1, size=2)
  out = p[y:y + h, x:x + w]
  return out[:, ::-1] if rng.random() < 0.5 else out


def augment_visible(img, rng):
  """The code's visible transform after normalisation: it first picks `transform_color`
  (probability 1/2: random erasing) or `transform_color1` (random erasing, then the channel
  exchange)."""
  exchange = rng.uniform(0, 1) <= 0.5
  img = augment.random_erasing(img, rng)
  return augment.channel_exchange(img, rng) if exchange else img


def augment_infrared(img, rng):
  """The code's infrared transform after normalisation: random erasing, then `ChannelAdapGray`."""
  return augment.channel_adapt_gray(augment.random_erasing(img, rng), rng)


class PairedSource:
  """Visible examples; `pair(ex, rng)` draws an infrared example of the same identity. `vis` and
  `ir` are random-access tables of `{image, shape, label}` with a `labels` array."""

  def __init__(self, vis, ir):
    self.vis, self.ir = vis, ir
    order = np.argsort(ir.labels, kind="stable")
    ids, starts, counts = np.unique(ir.labels[order], return_index=True, return_counts=True)
    self._ir_rows = {int(c): order[s:s + n] for c, s, n in zip(ids, starts, counts)}

  def __len__(self):
    return len(self.vis.labels)

  def __getitem__(self, i):
    return self.vis[i]

  def pair(self, ex, rng):
    return self.ir[int(rng.choice(self._ir_rows[int(ex["label"])]))]


class ArrayTable(data.ArraySource):
  @property
  def labels(self):
    return self.arrays["label"]


def paired_dataset(vis, ir, test, split: str, where: str,
                   channel_augment: bool = True) -> data.Dataset:
  """Train: `PairedSource` over the `vis` / `ir` tables (`image`, `shape`, `label`); other splits:
  the `test` table (`image`, `label`, `modality`, `camera`, `query`, `gallery_trials`)."""
  if split == "train":
    check_modalities(vis.labels, ir.labels, where)
    source = PairedSource(vis, ir)
    hw = np.shape(vis[0]["image"])[:2]
    keep = lambda img, rng: img  # noqa: E731
    aug_vis, aug_ir = (augment_visible, augment_infrared) if channel_augment else (keep, keep)

    def train(ex, rng):
      partner = source.pair(ex, rng)
      return {"image_vis": aug_vis(normalise(_pad_crop_flip(ex["image"], rng)), rng),
              "image_ir": aug_ir(normalise(_pad_crop_flip(partner["image"], rng)), rng),
              "shape_vis": normalise(_pad_crop_flip(ex["shape"], rng)),
              "shape_ir": normalise(_pad_crop_flip(partner["shape"], rng)),
              "label": np.int32(ex["label"])}
    spec = {k: ((*hw, 3), np.float32) for k in ("image_vis", "image_ir", "shape_vis",
                                                 "shape_ir")}
    spec["label"] = ((), np.int32)
    return data.Dataset(source, spec, preprocess=train,
                        info={"num_classes": int(vis.labels.max()) + 1})
  hw = np.shape(test[0]["image"])[:2]
  fields = ("label", "modality", "camera", "query", "gallery_trials")

  def evaluate(ex):
    return {"image": normalise(ex["image"]), **{k: np.int32(ex[k]) for k in fields}}
  return data.Dataset(test, {"image": ((*hw, 3), np.float32), **{k: ((), np.int32)
                                                                   for k in fields}},
                      eval_preprocess=evaluate)


# --- embedded: synthetic two-spectrum identities ----------------------------------------------
NUM_SHAPES, NUM_TEXTURES = 6, 10


def _shape_mask(kind: int, h: int, w: int, rng) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  cy, cx = h / 2 + rng.normal(0, 1), w / 2 + rng.normal(0, 0.7)
  sy, sx = h * 0.38 * rng.uniform(0.9, 1.1), w * 0.38 * rng.uniform(0.9, 1.1)
  u, v = (yy - cy) / sy, (xx - cx) / sx
  masks = [u ** 2 + v ** 2 < 1,                                        # ellipse
           (np.abs(u) < 1) & (np.abs(v) < 0.7),                         # box
           (u > -1) & (u < 1) & (np.abs(v) < (u + 1) / 2),              # triangle
           np.abs(u) + np.abs(v) < 1,                                   # diamond
           ((u + 0.45) ** 2 + v ** 2 < 0.3) | ((u - 0.45) ** 2 + v ** 2 < 0.3),  # two blobs
           (np.abs(u) < 1) & (np.abs(v) < 0.3) | (np.abs(u) < 0.3) & (np.abs(v) < 1)]  # cross
  return masks[kind]


def _texture(kind: int, h: int, w: int, rng) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  angle, freq = np.pi * (kind % 5) / 5, 0.6 + 0.35 * (kind // 5)
  t = 0.5 + 0.5 * np.sign(np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy)
                                 + rng.uniform(0, 2 * np.pi)))
  return t


def render_identities(num_ids: int, per_modality: int, seed: int, h: int = 32, w: int = 16,
                      id_offset: int = 0):
  """Identity k (k + id_offset) = (body shape k mod 6, texture k // 6 mod 10, its own two colours):
  `per_modality` visible images (the texture in colour inside the shape on a noisy background) and
  infrared ones (grey: a modality-specific intensity curve of the texture's luminance, other noise),
  each with its shape map (the mask as a grey image). Shape alone cannot identify (10 identities per
  shape); texture and colour can, but colour does not survive in the infrared images."""
  rng = np.random.default_rng(seed)
  out = {m: {"image": [], "shape": [], "label": []} for m in ("vis", "ir")}
  for k in range(num_ids):
    g = k + id_offset
    shape, texture = g % NUM_SHAPES, (g // NUM_SHAPES) % NUM_TEXTURES
    colours = np.random.default_rng([seed, g]).uniform(30, 225, (2, 3))
    for m in ("vis", "ir"):
      for _ in range(per_modality):
        mask = _shape_mask(shape, h, w, rng)
        t = _texture(texture, h, w, rng)
        if m == "vis":
          fg = colours[0] + t[..., None] * (colours[1] - colours[0])
          bg = rng.uniform(60, 200, 3) + rng.normal(0, 15, (h, w, 3))
          img = np.where(mask[..., None], fg + rng.normal(0, 8, (h, w, 3)), bg)
        else:
          heat = 140 + 90 * t ** 1.5
          grey = np.where(mask, heat + rng.normal(0, 12, (h, w)), rng.uniform(20, 70)
                          + rng.normal(0, 10, (h, w)))
          img = np.repeat(grey[..., None], 3, -1)
        out[m]["image"].append(np.clip(img, 0, 255).astype(np.uint8))
        out[m]["shape"].append(np.repeat((mask * 255).astype(np.uint8)[..., None], 3, -1))
        out[m]["label"].append(k)
  return {m: {k: np.stack(v) for k, v in d.items()} for m, d in out.items()}


@data.register("two_spectrum")
def two_spectrum(config, split: str) -> data.Dataset:
  """Embedded: `num_train_ids` (40) training and `num_test_ids` (20) disjoint test identities,
  `per_modality` (8) images each per modality, 32 x 16. Test: infrared queries from camera 2,
  visible gallery from camera 1 (no camera filtering applies)."""
  n_train, n_test = int(config.get("num_train_ids", 40)), int(config.get("num_test_ids", 20))
  per = int(config.get("per_modality", 8))
  if split == "train":
    d = render_identities(n_train, per, seed=0)
    return paired_dataset(ArrayTable(d["vis"]), ArrayTable(d["ir"]), None, split,
                          "two_spectrum", bool(config.get("channel_augment", True)))
  d = render_identities(n_test, per, seed=1, id_offset=n_train)
  nv, ni = len(d["vis"]["label"]), len(d["ir"]["label"])
  test = {"image": np.concatenate([d["vis"]["image"], d["ir"]["image"]]),
          "label": np.concatenate([d["vis"]["label"], d["ir"]["label"]]),
          "modality": np.repeat([0, 1], [nv, ni]), "camera": np.repeat([1, 2], [nv, ni]),
          "query": np.repeat([0, 1], [nv, ni]), "gallery_trials": np.repeat([1, 0], [nv, ni])}
  return paired_dataset(None, None, ArrayTable(test), split, "two_spectrum")


# --- SYSU-MM01 and RegDB (official directory layouts) -----------------------------------------
SYSU_VISIBLE, SYSU_INFRARED = (1, 2, 4, 5), (3, 6)
IMAGE_HW = (288, 144)


class FileTable:
  """Rows `{image, shape?, label, modality, camera, query}` read from files, resized to `hw`
  (PIL LANCZOS, as the code's pre-processing)."""

  def __init__(self, rows: list[dict], hw, shape_dir: str | None = None, root: str = ""):
    self.rows, self.hw, self.shape_dir, self.root = rows, tuple(hw), shape_dir, root
    self.labels = np.array([r["label"] for r in rows], np.int64)

  def __len__(self):
    return len(self.rows)

  def _read(self, path):
    from PIL import Image
    img = Image.open(path).convert("RGB").resize(self.hw[::-1], Image.LANCZOS)
    return np.asarray(img)

  def __getitem__(self, i):
    r = dict(self.rows[i])
    r["image"] = self._read(r.pop("path"))
    if self.shape_dir is not None:
      r["shape"] = self._read(r.pop("shape_path"))
    return r


def _sysu_ids(root, name):
  path = os.path.join(root, "exp", name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: unpack SYSU-MM01 (with its exp/ lists) at "
                            f"{root}.")
  with open(path) as f:
    return sorted(int(x) for x in f.read().splitlines()[0].split(","))


def _sysu_files(root, ids, cameras):
  """(path, pid, camera) in the code's order: by identity, then camera, then file name."""
  out = []
  for pid in ids:
    for cam in cameras:
      d = os.path.join(root, f"cam{cam}", f"{pid:04d}")
      if os.path.isdir(d):
        out.append([(os.path.join(d, f), pid, cam) for f in sorted(os.listdir(d))])
  return out


def _shape_path(shape_dir, root, path):
  rel = os.path.relpath(path, root)
  stem = os.path.join(shape_dir, os.path.splitext(rel)[0])
  for ext in (".png", ".jpg", os.path.splitext(rel)[1]):
    if os.path.exists(stem + ext):
      return stem + ext
  raise FileNotFoundError(f"No body-shape map for {rel} under {shape_dir} (expected "
                          f"{stem}.png).")


def sysu_gallery(groups, trial: int, shots: int = 1):
  """The code's gallery draw: `random.seed(trial)`, then per identity and camera (in order)
  `random.choice` of its sorted files (single-shot), or `random.sample` of `shots` (multi-shot)."""
  import random
  random.seed(trial)
  out = []
  for files in groups:
    out.extend([random.choice(files)] if shots == 1 else random.sample(files, min(shots,
                                                                                  len(files))))
  return out


def sysu_gallery_trials(groups, trials: int, shots: int = 1):
  """The galleries of trials 0..trials-1 (`sysu_gallery`) as one list: every file drawn by some
  trial once, in the groups' order, with the bitmask of the trials that drew it. Trial t's gallery
  is the files with bit t set, in the code's order (single-shot; a multi-shot draw's order within a
  group is the file order instead of the draw order, which only matters for tied distances)."""
  masks = {}
  for t in range(trials):
    for f in sysu_gallery(groups, t, shots):
      masks[f] = masks.get(f, 0) | 1 << t
  return [(*f, masks[f]) for files in groups for f in files if f in masks]


@data.register("sysu_mm01")
def sysu_mm01(config, split: str) -> data.Dataset:
  """SYSU-MM01 (`data_dir`: `cam{1..6}/<id:04d>/*.jpg`, `exp/{train,val,test}_id.txt`;
  `shape_dir`: the body-shape maps with the same relative paths). Train: the train + val ids
  (relabelled 0..394), visible cameras 1, 2, 4, 5, infrared 3, 6. Test: infrared queries of the
  test ids, gallery per `search_mode` ("all": cameras 1, 2, 4, 5; "indoor": 1, 2), `gallery_shots`
  (1 or 10) and `trials` (10: the standard protocol's galleries drawn with the code's
  `random.seed(trial)` for trial 0..trials-1; the task averages the metrics over them)."""
  root, hw = config.data_dir, tuple(config.get("image_size", IMAGE_HW))
  if split == "train":
    ids = sorted(_sysu_ids(root, "train_id.txt") + _sysu_ids(root, "val_id.txt"))
    relabel = {pid: i for i, pid in enumerate(ids)}
    shape_dir = config.shape_dir

    def table(cameras):
      rows = [{"path": p, "shape_path": _shape_path(shape_dir, root, p), "label": relabel[pid]}
              for group in _sysu_files(root, ids, cameras) for p, pid, _ in group]
      return FileTable(rows, hw, shape_dir, root)
    return paired_dataset(table(SYSU_VISIBLE), table(SYSU_INFRARED), None, split,
                          f"SYSU-MM01 at {root}", bool(config.get("channel_augment", True)))
  ids = _sysu_ids(root, "test_id.txt")
  mode = config.get("search_mode", "all")
  cams = {"all": SYSU_VISIBLE, "indoor": (1, 2)}[mode]
  gallery = sysu_gallery_trials(_sysu_files(root, ids, cams), int(config.get("trials", 10)),
                                int(config.get("gallery_shots", 1)))
  query = [f for group in _sysu_files(root, ids, SYSU_INFRARED) for f in group]
  rows = ([{"path": p, "label": pid, "camera": cam, "modality": 0, "query": 0,
            "gallery_trials": mask} for p, pid, cam, mask in gallery]
          + [{"path": p, "label": pid, "camera": cam, "modality": 1, "query": 1,
              "gallery_trials": 0} for p, pid, cam in query])
  return paired_dataset(None, None, FileTable(rows, hw), split, f"SYSU-MM01 at {root}")


@data.register("regdb")
def regdb(config, split: str) -> data.Dataset:
  """RegDB (`data_dir` with `idx/{train,test}_{visible,thermal}_<trial>.txt`, lines
  "<relative path> <label>", as the code reads them; `shape_dir` mirrors the images). `trial`
  (1..10) picks one of the 10 standard random train/test splits: each split trains its own model
  (the protocol's figure is the mean over the 10 runs, `ml_pipelines.jobs.reid_trials`). Test:
  `direction` "t2v" (thermal queries, visible gallery; default) or "v2t"."""
  root, hw, trial = config.data_dir, tuple(config.get("image_size", IMAGE_HW)), config.get(
      "trial", 1)

  def read(kind, modality):
    path = os.path.join(root, "idx", f"{split if split == 'train' else 'test'}_{kind}_{trial}.txt")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} is missing: unpack RegDB with its idx/ lists at {root}.")
    with open(path) as f:
      lines = [ln.split(" ") for ln in f.read().splitlines() if ln.strip()]
    return [{"path": os.path.join(root, p), "label": int(y), "modality": modality,
             "camera": modality + 1} for p, y in lines]
  vis, th = read("visible", 0), read("thermal", 1)
  if split == "train":
    for r in vis + th:
      r["shape_path"] = _shape_path(config.shape_dir, root, r["path"])
    ids = sorted({r["label"] for r in vis})
    relabel = {pid: i for i, pid in enumerate(ids)}
    for r in vis + th:
      r["label"] = relabel.get(r["label"], r["label"])
    strip = lambda rows: [{k: r[k] for k in ("path", "shape_path", "label")} for r in rows]  # noqa
    return paired_dataset(FileTable(strip(vis), hw, config.shape_dir, root),
                          FileTable(strip(th), hw, config.shape_dir, root), None, split,
                          f"RegDB at {root}", bool(config.get("channel_augment", True)))
  query_modality = 1 if config.get("direction", "t2v") == "t2v" else 0
  rows = [{**r, "query": int(r["modality"] == query_modality),
           "gallery_trials": int(r["modality"] != query_modality)} for r in vis + th]
  return paired_dataset(None, None, FileTable(rows, hw), split, f"RegDB at {root}")

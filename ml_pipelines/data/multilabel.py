"""Text-trained, image-tested multi-label data (PVP / TaI-DPT): the training split is sentences with
multi-hot labels, every other split is images with multi-hot labels.

Training split ("train"): the lines of `config.sentences` (one sentence per line, a file the user
provides: LLM-generated sentences or captions), labelled by `class_matcher.ClassMatcher` with the
class names and `config.synonyms` (optional file); sentences that name no class are dropped, and a
file where no line names a class is an error. Then `template_copies` copies of "a photo of a
{class}." per class (the official code adds 200 in stage 2 and 400 in stage 1, plus the ImageNet
templates). Examples: `tokens` int32 [context_length], `labels` int32 [C].

Image splits (`image` NHWC float32 normalised with CLIP's mean/std, `labels` int32 [C], 1 = present;
resize of the shorter side to `image_size` (bicubic) and a center crop):
- `pvp_voc2007`: TFDS `voc/2007` (test: 4,952 images), labels from the objects (difficult ones too).
- `pvp_coco2014`: TFDS `coco/2014` (validation: 40,504 images), labels from the objects.
- `pvp_nuswide`: the NUS-WIDE release in a manual directory: `Concepts81.txt`,
  `ImageList/TestImagelist.txt` (paths with `\\` under `Flickr/`), `TrainTestLabels/
  Labels_<concept>_Test.txt` (one 0/1 per image), images under `Flickr/`.
- `pvp_digit_scenes` (embedded, the demo): 64 x 64 canvases with 2-3 distinct scikit-learn digits
  in the cells of a 2 x 2 grid (digits from the digits test rows; `scenes` canvases, seed 0); its
  sentences default to the shipped `assets/digit_sentences.txt` (`digit_sentences()`).
"""
from __future__ import annotations

import functools
import itertools
import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data import digits as digits_data
from ml_pipelines.data.class_matcher import ClassMatcher, read_synonyms
from ml_pipelines.data.tfds_image import tfds_source
from models.clip import MEAN, STD
from models.clip_tokenizer import tokenize

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DIGIT_SENTENCES = os.path.join(ASSETS, "digit_sentences.txt")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
COCO_CLASSES = (  # the order of TFDS coco/2014's object labels (COCO's category order)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")
NUSWIDE_CONCEPTS = (  # Concepts81.txt of the NUS-WIDE release
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest",
    "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow",
    "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo",
    "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra")
VOC_SYNONYMS = {"aeroplane": ["aeroplane", "airplane", "plane", "jet", "aircraft"],
                "bicycle": ["bicycle", "bike"], "diningtable": ["dining table", "table"],
                "motorbike": ["motorbike", "motorcycle", "motor bike"],
                "person": ["person", "people", "man", "woman", "child", "boy", "girl"],
                "pottedplant": ["potted plant", "plant", "houseplant"],
                "sofa": ["sofa", "couch"], "tvmonitor": ["tv monitor", "tv", "television",
                                                        "monitor"]}
CLASS_NAMES = {"pvp_voc2007": VOC_CLASSES, "pvp_coco2014": COCO_CLASSES,
               "pvp_nuswide": NUSWIDE_CONCEPTS, "pvp_digit_scenes": DIGIT_NAMES}



# --- sentences ------------------------------------------------------------------------------------
def sentence_arrays(path: str, class_names, synonyms=None, template_copies: int = 200,
                    context_length: int = 77) -> dict[str, np.ndarray]:
  """{tokens [N, L], labels [N, C]} of the lines of `path` that name a class, plus templates."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Sentence file {path!r} does not exist: give one sentence per line "
                            f"with --config.data.sentences=FILE.")
  with open(path, encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip()]
  matcher = ClassMatcher(class_names, synonyms)
  labels = np.zeros((len(lines), len(class_names)), np.int32)
  for i, line in enumerate(lines):
    labels[i] = matcher.labels(line)
  keep = labels.any(axis=1)
  if not keep.any():
    raise ValueError(f"No line of the sentence file {path!r} ({len(lines)} lines) names any of the "
                     f"{len(class_names)} classes ({', '.join(class_names[:8])}"
                     f"{', ...' if len(class_names) > 8 else ''}); check that it holds one "
                     f"sentence per line and the class names / config.data.synonyms.")
  texts = [s for s, k in zip(lines, keep) if k]
  labels = labels[keep]
  templates = [f"a photo of a {name.replace('_', ' ')}." for name in class_names]
  eye = np.eye(len(class_names), dtype=np.int32)
  tokens = np.concatenate([tokenize(texts, context_length),
                           np.repeat(tokenize(templates, context_length), template_copies, axis=0)])
  labels = np.concatenate([labels, np.repeat(eye, template_copies, axis=0)]).astype(np.int32)
  return {"tokens": tokens, "labels": labels}


def _sentences(config, class_names, default_synonyms=None, default_path=None) -> data.Dataset:
  path = config.get("sentences") or default_path
  if not path:
    raise ValueError("config.data.sentences is empty: give the training sentence file "
                     "(one sentence per line) with --config.data.sentences=FILE.")
  synonyms = read_synonyms(config.synonyms) if config.get("synonyms") else default_synonyms
  length = int(config.get("context_length", 77))
  arrays = sentence_arrays(path, class_names, synonyms, int(config.get("template_copies", 200)),
                           length)
  return data.Dataset(data.ArraySource(arrays),
                      {"tokens": ((length,), np.int32), "labels": ((len(class_names),), np.int32)},
                      info={"class_names": tuple(class_names)})


# --- images ---------------------------------------------------------------------------------------
def clip_normalise(image: np.ndarray) -> np.ndarray:
  """uint8 (or [0, 1] float) RGB -> CLIP-normalised float32."""
  x = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
  return ((x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)).astype(np.float32)


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter side to `size` (bicubic), then the central size x size crop."""
  from PIL import Image
  h, w = image.shape[:2]
  s = size / min(h, w)
  nh, nw = max(size, round(h * s)), max(size, round(w * s))
  img = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
  top, left = (nh - size) // 2, (nw - size) // 2
  return img[top:top + size, left:left + size]


def multi_hot(indices, num_classes: int) -> np.ndarray:
  y = np.zeros(num_classes, np.int32)
  y[np.asarray(indices, np.int64)] = 1
  return y


class _ObjectLabels:
  """A TFDS detection split as (image, multi-hot labels of its objects)."""

  def __init__(self, source, num_classes: int):
    self.source, self.num_classes = source, num_classes

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    ex = self.source[i]
    return {"image": np.asarray(ex["image"]),
            "labels": multi_hot(ex["objects"]["label"], self.num_classes)}


def _images(source, class_names, size: int) -> data.Dataset:
  def prepare(ex):
    return {"image": clip_normalise(resize_center_crop(ex["image"], size)),
            "labels": ex["labels"]}
  return data.Dataset(source, {"image": ((size, size, 3), np.float32),
                               "labels": ((len(class_names),), np.int32)},
                      preprocess=lambda ex, rng: prepare(ex), eval_preprocess=prepare,
                      info={"class_names": tuple(class_names)})


@data.register("pvp_voc2007")
def voc2007(config, split: str) -> data.Dataset:
  if split == config.get("train_split", "train"):
    return _sentences(config, VOC_CLASSES, VOC_SYNONYMS)
  return _images(_ObjectLabels(tfds_source("voc/2007", split, config.get("data_dir")), 20),
                 VOC_CLASSES, int(config.get("image_size", 224)))


@data.register("pvp_coco2014")
def coco2014(config, split: str) -> data.Dataset:
  names = COCO_CLASSES
  if split == config.get("train_split", "train"):
    return _sentences(config, names)
  return _images(_ObjectLabels(tfds_source("coco/2014", split, config.get("data_dir")),
                               len(names)), names, int(config.get("image_size", 224)))


class _NusWideImages:
  """NUS-WIDE test images read from the manual directory on access."""

  def __init__(self, root: str, paths, labels):
    self.root, self.paths, self.labels = root, paths, labels

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    from PIL import Image
    with Image.open(os.path.join(self.root, "Flickr", self.paths[i])) as img:
      return {"image": np.asarray(img.convert("RGB")), "labels": self.labels[i]}


def nuswide_concepts(root: str) -> tuple[str, ...]:
  path = os.path.join(root, "Concepts81.txt")
  if not os.path.exists(path):
    raise FileNotFoundError(f"NUS-WIDE is read from a manual directory; {path!r} is missing. "
                            f"Put the release's Concepts81.txt, ImageList/, TrainTestLabels/ and "
                            f"Flickr/ under config.data.data_dir.")
  with open(path) as f:
    return tuple(line.strip() for line in f if line.strip())


@data.register("pvp_nuswide")
def nuswide(config, split: str) -> data.Dataset:
  root = os.path.expanduser(config.get("data_dir") or "")
  if split == config.get("train_split", "train"):
    return _sentences(config, NUSWIDE_CONCEPTS)
  names = nuswide_concepts(root)
  if names != NUSWIDE_CONCEPTS:
    raise ValueError(f"{root}/Concepts81.txt lists {len(names)} concepts that differ from the 81 "
                     f"of the NUS-WIDE release (models' prompts follow NUSWIDE_CONCEPTS).")
  part = {"test": "Test", "train_images": "Train"}[split]
  with open(os.path.join(root, "ImageList", f"{part}Imagelist.txt")) as f:
    paths = [line.strip().replace("\\", "/") for line in f if line.strip()]
  columns = []
  for name in names:
    with open(os.path.join(root, "TrainTestLabels", f"Labels_{name}_{part}.txt")) as f:
      columns.append([int(line) for line in f if line.strip()])
  labels = np.asarray(columns, np.int32).T
  if labels.shape[0] != len(paths):
    raise ValueError(f"NUS-WIDE {part}: {len(paths)} images but {labels.shape[0]} label rows.")
  return _images(_NusWideImages(root, paths, labels), names, int(config.get("image_size", 224)))


# --- digit scenes (embedded) ----------------------------------------------------------------------
def digit_sentences() -> list[str]:
  """The shipped demo sentences: every pair and a fixed sample of triples of digit names in a few
  templates (names and numerals)."""
  pairs = ["a {} and a {}", "the digits {} and {}", "a {} next to a {}", "{} and {} on a page"]
  triples = ["a {}, a {} and a {}", "the digits {}, {} and {}"]
  rng = np.random.default_rng(0)
  out = []
  for a, b in itertools.permutations(range(10), 2):
    t = pairs[(a + b) % len(pairs)]
    out.append(t.format(*(DIGIT_NAMES[d] if (a * b) % 3 else str(d) for d in (a, b))))
  for a, b, c in itertools.combinations(range(10), 3):
    if rng.random() < 0.5:
      out.append(triples[(a + b + c) % 2].format(DIGIT_NAMES[a], DIGIT_NAMES[b], DIGIT_NAMES[c]))
  return out


@functools.lru_cache(maxsize=4)
def digit_scenes(num: int, seed: int = 0) -> dict[str, np.ndarray]:
  """{image [N, 64, 64, 3] in [0, 1], labels [N, 10]}: 2-3 distinct test-row digits per canvas."""
  images, target = digits_data.load()
  rows = digits_data.rows("test")
  by_class = [rows[target[rows] == c] for c in range(10)]
  rng = np.random.default_rng(seed)
  canvas = np.zeros((num, 64, 64, 3), np.float32)
  labels = np.zeros((num, 10), np.int32)
  for n in range(num):
    classes = rng.choice(10, size=rng.integers(2, 4), replace=False)
    cells = rng.choice(4, size=len(classes), replace=False)
    for c, cell in zip(classes, cells):
      digit = images[rng.choice(by_class[c])] / 16.0
      y, x = divmod(int(cell), 2)
      canvas[n, 32 * y:32 * y + 32, 32 * x:32 * x + 32] = np.kron(digit, np.ones((4, 4)))[..., None]
      labels[n, c] = 1
  return {"image": canvas, "labels": labels}


@data.register("pvp_digit_scenes")
def digit_scene_data(config, split: str) -> data.Dataset:
  synonyms = {name: [name, str(d)] for d, name in enumerate(DIGIT_NAMES)}
  if split == config.get("train_split", "train"):
    return _sentences(config, DIGIT_NAMES, synonyms, default_path=DIGIT_SENTENCES)
  arrays = digit_scenes(int(config.get("scenes", 300)))
  source = data.ArraySource({"image": clip_normalise(arrays["image"]), "labels": arrays["labels"]})
  return data.Dataset(source, {"image": ((64, 64, 3), np.float32), "labels": ((10,), np.int32)},
                      info={"class_names": DIGIT_NAMES})

"""`moving_shapes`: synthetic videos of coloured shapes that move, for every video-language method.

Nothing is downloaded: video `index` of a split is drawn from `np.random.default_rng((seed, split,
index))`, so any video can be made alone, in any order, and is the same every time (a resumed run
reads what an uninterrupted one would have).

A video has `frames` RGB frames of `size` x `size` pixels on a black background and 2-3 objects
(`objects=(lo, hi)` for another range).
An object has a shape (circle, square, triangle), a colour (5) and a motion (left, right, up, down,
or static) that runs from its `start` to its `end` frame (inclusive; a static object's interval is
the whole video); before `start` and after `end` it stands still. Per video the generator gives
- one caption per object: "a red circle moves left" / "a red circle stays still";
- a box tube per object: `boxes [objects, frames, 4]` as (x0, y0, x1, y1) in pixels;
- the motion interval `(start, end)` of each object;
- QA pairs: "what is the red circle doing?" -> "moving left" for every object, and "what moves
  left?" -> "red circle" when one object alone has that motion.

What it is for: each video has several true captions about different objects (the video-text
correspondence ambiguity TMVM targets); with `hard=True` two objects of every video share colour and
shape and differ only in their motion, so only the motion tells which one a caption names (the
static/dynamic split of spatio-temporal grounding); the QA pairs give entities and actions.
"""
from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240),
           "yellow": (235, 220, 40), "white": (235, 235, 235)}
MOTIONS = ("left", "right", "up", "down", "static")
_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}
SPLITS = {"train": 0, "test": 1, "val": 2}
SPECIAL = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
VOCAB = SPECIAL + tuple(sorted(
    {"a", "moves", "stays", "still", "what", "is", "the", "doing", "moving", "staying", "?"}
    | set(SHAPES) | set(COLOURS) | set(MOTIONS) - {"static"}))


@dataclasses.dataclass(frozen=True)
class ShapeObject:
  shape: str
  colour: str
  motion: str
  start: int  # first frame of the motion
  end: int    # last frame of the motion (inclusive)

  @property
  def name(self) -> str:
    return f"{self.colour} {self.shape}"

  @property
  def caption(self) -> str:
    if self.motion == "static":
      return f"a {self.name} stays still"
    return f"a {self.name} moves {self.motion}"

  @property
  def action(self) -> str:
    return "staying still" if self.motion == "static" else f"moving {self.motion}"


def _objects(rng: np.random.Generator, frames: int, hard: bool,
             objects: tuple[int, int]) -> list[ShapeObject]:
  count = int(rng.integers(objects[0], objects[1] + 1))
  looks = [(s, c) for s in SHAPES for c in COLOURS]
  picks = [looks[i] for i in rng.permutation(len(looks))[:count]]
  motions = [MOTIONS[i] for i in rng.integers(0, len(MOTIONS), count)]
  if hard:  # objects 0 and 1 look the same and move differently
    picks[1] = picks[0]
    if motions[1] == motions[0]:
      motions[1] = MOTIONS[(MOTIONS.index(motions[0]) + 1 + int(rng.integers(0, 4))) % 5]
  objs = []
  for (shape, colour), motion in zip(picks, motions):
    if motion == "static":
      start, end = 0, frames - 1
    else:
      length = int(rng.integers(max(2, frames // 3), frames + 1))
      start = int(rng.integers(0, frames - length + 1))
      start, end = start, start + length - 1
    objs.append(ShapeObject(shape, colour, motion, start, end))
  return objs


def _draw(frame: np.ndarray, shape: str, colour, x0: float, y0: float, side: float) -> None:
  h, w = frame.shape[:2]
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
  u, v = (xx - x0) / side, (yy - y0) / side  # in [0, 1] inside the box
  if shape == "square":
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
  elif shape == "circle":
    inside = (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25
  else:  # triangle, apex up
    inside = (v >= 0) & (v < 1) & (np.abs(u - 0.5) <= 0.5 * v)
  frame[inside] = colour


def video(seed: int, split: str, index: int, *, frames: int = 8, size: int = 32,
          hard: bool = False, objects: tuple[int, int] = (2, 3)) -> dict:
  """Video `index` of `split`: `frames` uint8 [T, S, S, 3], `objects` (list of ShapeObject),
  `boxes` float32 [n, T, 4] (x0, y0, x1, y1) pixels, `captions`, `qa` (question, answer) pairs.
  `objects`: the smallest and largest number of objects (2 and 3 unless asked; the default
  draws the same videos as before the option existed)."""
  rng = np.random.default_rng((seed, SPLITS[split], index, int(hard)))
  objs = _objects(rng, frames, hard, tuple(objects))
  side = float(max(4, size // 4))
  speed = (size - side) / max(frames - 1, 1) * 0.8
  out = np.zeros((frames, size, size, 3), np.uint8)
  boxes = np.zeros((len(objs), frames, 4), np.float32)
  for k, o in enumerate(objs):
    dx, dy = _STEP[o.motion]
    travel = speed * (o.end - o.start)
    lo_x, hi_x = max(0.0, -dx * travel), size - side - max(0.0, dx * travel)
    lo_y, hi_y = max(0.0, -dy * travel), size - side - max(0.0, dy * travel)
    x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    for t in range(frames):
      moved = speed * (min(max(t, o.start), o.end) - o.start)
      boxes[k, t] = (x + dx * moved, y + dy * moved, x + dx * moved + side, y + dy * moved + side)
  for t in range(frames):
    for k, o in enumerate(objs):
      _draw(out[t], o.shape, COLOURS[o.colour], boxes[k, t, 0], boxes[k, t, 1], side)
  qa = [(f"what is the {o.name} doing ?", o.action) for o in objs]
  by_motion = {}
  for o in objs:
    by_motion.setdefault(o.motion, []).append(o)
  for motion, group in by_motion.items():
    if len(group) == 1 and motion != "static":
      qa.append((f"what moves {motion} ?", group[0].name))
  return {"frames": out, "objects": objs, "boxes": boxes,
          "captions": [o.caption for o in objs], "qa": qa}


def tokenize(texts, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Word ids `[n, length]` int32 ("[CLS] words [SEP]", padded with 0) and their mask, over the
  fixed vocabulary `VOCAB` of every caption, question and answer this generator writes."""
  ids = {w: i for i, w in enumerate(VOCAB)}
  out = np.zeros((len(texts), length), np.int32)
  for r, text in enumerate(texts):
    words = [1] + [ids.get(w, 3) for w in text.lower().split()][:length - 2] + [2]
    out[r, :len(words)] = words
  return out, out > 0

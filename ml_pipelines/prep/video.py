"""Decode videos into ArrayRecord frames at a fixed rate and size (read by data/video_text.py).

Retrieval sets (MSR-VTT, DiDeMo, LSMDC, MSVD): every video of `--videos_dir` (files, or folders of
frame images) becomes one record `{"frames": uint8 [L, S, S, 3]}` of split `videos`, frames taken
at `--fps` (CLIP4Clip extracts 1 fps) and resized to S x S; `videos.json` lists the ids (file
names without extension) in record order.

    python -m ml_pipelines.prep.video --videos_dir=MSRVTT/videos/all --out_dir=data/msrvtt --fps=1

Grounding sets (HC-STVG v1 / v2): `--ann_dir` holds the official annotation files
(`train.json`/`test.json`, v2: `trainv2.json`/`valv2.json`: `{"<video>.mp4": {img_num, st_frame,
bbox: [[x, y, w, h], ...], caption (v2: English), width/height (v2: img_size)}}`) and
`--videos_dir` the videos, in sub-folders as distributed. Frames are chosen as TubeDETR does
(antoyang/TubeDETR `datasets/hcstvg_eval.py`): HC-STVG clips last 20 s, so the source rate is
`img_num / 20`; frame f is kept when `int(f * rate)` moves past the last kept one (rate = fps /
source rate, 5 fps by default), then at most `--max_frames` are kept evenly; a kept frame has the
box `bbox[f - st_frame]` when `st_frame <= f < st_frame + len(bbox)`. Records of split s: `frames`,
`boxes` float32 [L, 4] (x0, y0, x1, y1) in resized pixels, `box_mask` [L]; `s.json` has ids,
captions, max_frames and size.

    python -m ml_pipelines.prep.video --grounding=hcstvg --videos_dir=HCSTVG/video \
        --ann_dir=HCSTVG/anno --out_dir=data/hcstvg --fps=5 --max_frames=200 --size=224

VidSTG (built on VidOR): `--ann_dir` holds TubeDETR's VidSTG files `train.json` / `val.json` /
`test.json` (`{"videos": [{video_id, original_video_id, video_path, fps, width, height,
start_frame, end_frame, tube_start_frame, tube_end_frame, target_id, caption, qtype}, ...],
"trajectories": {original_video_id: {target_id: {frame: {"bbox": [x, y, w, h]}}}}}`), which
TubeDETR's `preproc/preproc_vidstg.py` writes from the official VidSTG `<split>_annotations.json`
and the VidOR annotations; `--videos_dir` the VidOR videos (`<folder>/<id>.mp4`, or frame folders
`<folder>/<id>/`). Frames as TubeDETR's `datasets/vidstg.py`: from `start_frame` to `end_frame`
(excluded) at `fps / video fps`, at most `--max_frames` evenly; a frame is in the tube when
`tube_start_frame <= f < tube_end_frame`. Many sentences share a segment, so each segment's
frames are stored once (split `s_clips`) and each sentence's record holds `boxes`, `box_mask` and
`clip` (its segment's row); `s.json` also lists `qtypes` (declarative / interrogative) and the
sentences `skipped` because no kept frame falls inside their tube (shorter than a frame step).

    python -m ml_pipelines.prep.video --grounding=vidstg --videos_dir=VidOR/video \
        --ann_dir=vidstg_ann --out_dir=data/vidstg --fps=5 --max_frames=200 --size=224

Decoding: a folder of images (jpg/png, sorted by name; `--source_fps` gives their rate, default the
target rate) needs only Pillow; video files are read with imageio (mp4 needs its pyav or ffmpeg
plugin: `pip install av` or `imageio-ffmpeg`).
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

from ml_pipelines.data import records

IMAGE_EXT = (".jpg", ".jpeg", ".png")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v")
GROUNDING = {"hcstvg": {"train": "train.json", "test": "test.json"},
             "hcstvg2": {"train": "trainv2.json", "val": "valv2.json"}}


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image
  return np.asarray(Image.fromarray(np.asarray(frame)[..., :3]).convert("RGB").resize(
      (size, size), Image.BILINEAR))


def read_frames(path: str) -> tuple[list[np.ndarray] | list[str], float | None]:
  """All frames of a video file (arrays) or of a frame folder (file names), and the file's frame
  rate when it says one."""
  if os.path.isdir(path):
    files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXT))
    if not files:
      raise FileNotFoundError(f"frame folder {path} has no {'/'.join(IMAGE_EXT)} images")
    return files, None
  try:
    import imageio.v3 as iio
    meta = iio.immeta(path)
    frames = list(iio.imiter(path))
  except Exception as e:  # a missing plugin or an unreadable file
    raise RuntimeError(
        f"cannot decode {path} ({type(e).__name__}: {e}). Install a decoder imageio can use "
        f"(`pip install av` or `imageio-ffmpeg`), or extract frames into a folder per video "
        f"(<videos_dir>/<id>/*.jpg) and give --source_fps.") from e
  fps = meta.get("fps")
  if fps is None and meta.get("duration"):  # GIF: duration per frame in ms
    fps = 1000.0 / float(meta["duration"])
  return frames, fps


def _load(frame, size):
  if isinstance(frame, str):
    from PIL import Image
    frame = np.asarray(Image.open(frame).convert("RGB"))
  return _resize(frame, size)


def resample(count: int, source_fps: float, fps: float) -> np.ndarray:
  """Frame indices at `fps` of a video of `count` frames at `source_fps`: floor(k * src / fps)."""
  n = max(1, int(np.floor(count * fps / source_fps + 1e-9)))
  return np.minimum(np.floor(np.arange(n) * source_fps / fps + 1e-9).astype(int), count - 1)


def find_videos(videos_dir: str) -> dict[str, str]:
  """id -> path of every video file or frame folder under `videos_dir` (one level of
  sub-folders allowed, as HC-STVG distributes its videos)."""
  out = {}
  for entry in sorted(os.listdir(videos_dir)):
    path = os.path.join(videos_dir, entry)
    stem, ext = os.path.splitext(entry)
    if os.path.isfile(path) and ext.lower() in VIDEO_EXT:
      out[stem] = path
    elif os.path.isdir(path):
      inner = sorted(os.listdir(path))
      if any(f.lower().endswith(IMAGE_EXT) for f in inner):
        out[entry] = path
      else:
        out.update(find_videos(path))
  return out


def prepare_videos(videos_dir: str, out_dir: str, *, fps: float = 1.0, size: int = 224,
                   source_fps: float | None = None, num_shards: int = 1) -> int:
  """Writes split `videos` and `videos.json` under `out_dir`; returns the number of videos."""
  found = find_videos(videos_dir)
  if not found:
    raise FileNotFoundError(f"no videos ({'/'.join(VIDEO_EXT)}) or frame folders in {videos_dir}")

  def examples():
    for vid, path in found.items():
      frames, rate = read_frames(path)
      idx = resample(len(frames), rate or source_fps or fps, fps)
      yield {"frames": np.stack([_load(frames[i], size) for i in idx]).astype(np.uint8)}
  records.write(out_dir, "videos", examples(), num_shards)
  with open(os.path.join(out_dir, "videos.json"), "w") as f:
    json.dump({"ids": list(found), "fps": fps, "size": size}, f)
  return len(found)


def _downsample(start: int, stop: int, rate: float, max_frames: int) -> list[int]:
  """TubeDETR's frame choice: from `start`, frame f < stop is kept when `int(f * rate)` moves past
  the last kept one, then at most `max_frames` of those are kept evenly."""
  ids = [start]
  for f in range(start, stop):
    if int(ids[-1] * rate) < int(f * rate):
      ids.append(f)
  if len(ids) > max_frames:
    ids = [ids[(j * len(ids)) // max_frames] for j in range(max_frames)]
  return ids


def tubedetr_frames(count: int, fps: float, max_frames: int, seconds: float = 20.0) -> list[int]:
  """The frame ids TubeDETR keeps of a `count`-frame HC-STVG clip (datasets/hcstvg_eval.py)."""
  return _downsample(0, count - 1, fps / (count / seconds), max_frames)


def vidstg_frames(video: dict, fps: float, max_frames: int) -> list[int]:
  """The frame ids TubeDETR keeps of a VidSTG sentence's segment [start_frame, end_frame) at
  `fps` (datasets/vidstg.py, with its temporal annotations: `tmp_loc`)."""
  return _downsample(int(video["start_frame"]), int(video["end_frame"]), fps / video["fps"],
                     max_frames)


def prepare_vidstg(videos_dir: str, ann_dir: str, out_dir: str, *, fps: float = 5.0,
                   size: int = 224, max_frames: int = 200) -> dict[str, int]:
  """VidSTG from TubeDETR's annotation files (module docstring). Each VidOR segment is stored once
  (split `<s>_clips`), each sentence is a record of split `<s>` naming its segment's row."""
  found = find_videos(videos_dir)
  counts = {}
  for split in ("train", "val", "test"):
    file = os.path.join(ann_dir, f"{split}.json")
    with open(file) as f:
      ann = json.load(f)
    if not isinstance(ann, dict) or "videos" not in ann:
      raise ValueError(f"{file} is not in TubeDETR's VidSTG layout ({{'videos': [...], "
                       f"'trajectories': {{...}}}}). Convert the official VidSTG "
                       f"<split>_annotations.json and the VidOR annotations with TubeDETR's "
                       f"preproc/preproc_vidstg.py (github.com/antoyang/TubeDETR) first.")
    segments: dict[tuple, int] = {}
    keep_of, rows, ids, caps, qtypes, skipped = [], [], [], [], [], []
    for v in ann["videos"]:
      where = f"{file}: sentence {v['video_id']} ({v['caption']!r}, video {v['video_path']!r})"
      start, end = int(v["tube_start_frame"]), int(v["tube_end_frame"])
      tube = ann["trajectories"].get(v["original_video_id"], {}).get(str(v["target_id"]), {})
      if end <= start or not tube:
        raise ValueError(f"{where} has an empty tube (frames [{start}, {end}), "
                         f"{len(tube)} boxes of object {v['target_id']}); drop it from {file}.")
      vid = os.path.splitext(os.path.basename(v["video_path"]))[0]
      if vid not in found:
        raise FileNotFoundError(f"{where} names a video that is not under {videos_dir}.")
      keep = vidstg_frames(v, fps, max_frames)
      inside = np.array([start <= f < end for f in keep])
      if not inside.any():  # a tube shorter than the frame step: no kept frame shows it
        skipped.append(v["video_id"])
        continue
      missing = [f for f, i in zip(keep, inside) if i and str(f) not in tube]
      if missing:
        raise ValueError(f"{where}: the trajectory of object {v['target_id']} has no box on "
                         f"frames {missing[:5]} inside its tube.")
      key = (vid, keep[0], keep[-1], len(keep))
      if key not in segments:
        segments[key] = len(keep_of)
        keep_of.append((vid, keep))
      sx, sy = size / v["width"], size / v["height"]
      boxes = np.zeros((len(keep), 4), np.float32)
      for k in np.flatnonzero(inside):
        x, y, w, h = tube[str(keep[k])]["bbox"]
        boxes[k] = np.array([x * sx, y * sy, (x + w) * sx, (y + h) * sy])
      rows.append({"boxes": boxes, "box_mask": inside, "clip": np.int64(segments[key])})
      ids.append(v["video_id"])
      caps.append(v["caption"])
      qtypes.append(v.get("qtype", ""))

    def clips():
      for vid, keep in keep_of:
        frames, _ = read_frames(found[vid])
        pick = np.minimum(keep, len(frames) - 1)
        yield {"frames": np.stack([_load(frames[i], size) for i in pick]).astype(np.uint8)}
    records.write(out_dir, f"{split}_clips", clips())
    records.write(out_dir, split, rows)
    with open(os.path.join(out_dir, f"{split}.json"), "w") as f:
      json.dump({"ids": ids, "captions": caps, "qtypes": qtypes, "max_frames": max_frames,
                 "size": [size, size], "clips": f"{split}_clips", "skipped": skipped}, f)
    counts[split] = len(ids)
  return counts


def prepare_grounding(name: str, videos_dir: str, ann_dir: str, out_dir: str, *, fps: float = 5.0,
                      size: int = 224, max_frames: int = 200) -> dict[str, int]:
  found = find_videos(videos_dir)
  counts = {}
  for split, file in GROUNDING[name].items():
    with open(os.path.join(ann_dir, file)) as f:
      anns = json.load(f)
    ids, caps = [], []

    def examples(anns=anns, ids=ids, caps=caps, file=file):
      for key, a in anns.items():
        vid = os.path.splitext(key)[0]
        if not a.get("bbox"):
          raise ValueError(f"{file}: video {key!r} has an empty tube (no bbox); drop it from the "
                           f"annotations.")
        if vid not in found:
          raise FileNotFoundError(f"{file} names video {key!r}, which is not under {videos_dir}.")
        frames, _ = read_frames(found[vid])
        w, h = (a["width"], a["height"]) if "width" in a else (a["img_size"][1], a["img_size"][0])
        keep = tubedetr_frames(int(a["img_num"]), fps, max_frames)
        st, bbox = int(a["st_frame"]), a["bbox"]
        boxes = np.zeros((len(keep), 4), np.float32)
        inside = np.zeros(len(keep), bool)
        for k, fr in enumerate(keep):
          if st <= fr < st + len(bbox):
            x, y, bw, bh = bbox[fr - st]
            boxes[k] = np.array([x, y, x + bw, y + bh]) * np.array([size / w, size / h] * 2)
            inside[k] = True
        pick = np.minimum(keep, len(frames) - 1)
        ids.append(vid)
        caps.append(a.get("caption", a.get("English", "")))
        yield {"frames": np.stack([_load(frames[i], size) for i in pick]).astype(np.uint8),
               "boxes": boxes, "box_mask": inside}
    records.write(out_dir, split, examples())
    with open(os.path.join(out_dir, f"{split}.json"), "w") as f:
      json.dump({"ids": ids, "captions": caps, "max_frames": max_frames, "size": [size, size]}, f)
    counts[split] = len(ids)
  return counts


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--videos_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--grounding", choices=sorted(GROUNDING) + ["vidstg"])
  p.add_argument("--ann_dir")
  p.add_argument("--fps", type=float)
  p.add_argument("--source_fps", type=float)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--max_frames", type=int, default=200)
  p.add_argument("--num_shards", type=int, default=1)
  a = p.parse_args(argv)
  if a.grounding == "vidstg":
    counts = prepare_vidstg(a.videos_dir, a.ann_dir, a.out_dir, fps=a.fps or 5.0, size=a.size,
                            max_frames=a.max_frames)
  elif a.grounding:
    counts = prepare_grounding(a.grounding, a.videos_dir, a.ann_dir, a.out_dir, fps=a.fps or 5.0,
                               size=a.size, max_frames=a.max_frames)
  else:
    counts = prepare_videos(a.videos_dir, a.out_dir, fps=a.fps or 1.0, size=a.size,
                            source_fps=a.source_fps, num_shards=a.num_shards)
  print(f"wrote {counts} to {a.out_dir}")


if __name__ == "__main__":
  main()

"""Video data: frame sampling, `moving_shapes`, the retrieval / grounding layouts, the video prep on
fake files in the real layouts, and the three bad inputs (short video, missing video, empty
tube)."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from ml_pipelines import data
from ml_pipelines.data import moving_shapes, pipeline
from ml_pipelines.data import video as video_lib
from ml_pipelines.prep import video as prep_video

MS = dict(name="moving_shapes_retrieval", train_size=12, test_size=6, frames=16, num_frames=8,
          train_sampling="headtail")


def test_uniform_is_clip4clip_linspace():
  assert video_lib.uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
  assert video_lib.uniform_indices(3, 5).tolist() == [0, 0, 1, 1, 2]


def test_headtail_halves_sorted_distinct_and_seeded():
  for seed in range(20):
    idx = video_lib.headtail_indices(17, 8, np.random.default_rng(seed))
    head, tail = idx[:4], idx[4:]
    assert (head < 8).all() and (tail >= 8).all() and (tail < 17).all()
    assert (np.diff(head) > 0).all() and (np.diff(tail) > 0).all()
    again = video_lib.headtail_indices(17, 8, np.random.default_rng(seed))
    assert (idx == again).all()


def test_moving_shapes_deterministic_and_consistent():
  a = moving_shapes.video(3, "train", 7, hard=True)
  moving_shapes.video(3, "train", 8)
  b = moving_shapes.video(3, "train", 7, hard=True)
  assert (a["frames"] == b["frames"]).all() and a["captions"] == b["captions"]
  assert not (moving_shapes.video(3, "train", 6)["frames"] == a["frames"]).all()
  o0, o1 = a["objects"][:2]
  assert o0.name == o1.name and o0.motion != o1.motion  # the hard pair
  for i in range(30):
    v = moving_shapes.video(0, "test", i)
    last, box = v["objects"][-1], v["boxes"][-1]  # drawn last, so never hidden
    for t in range(8):
      cx, cy = (box[t, :2] + box[t, 2:]) / 2
      assert tuple(v["frames"][t, int(cy), int(cx)]) == moving_shapes.COLOURS[last.colour]
    for o, b in zip(v["objects"], v["boxes"]):
      dx, dy = moving_shapes._STEP[o.motion]
      move = b[o.end, :2] - b[o.start, :2]
      assert np.sign(move).tolist() == [dx, dy]
      assert (b[:o.start + 1] == b[o.start]).all() and (b[o.end:] == b[o.end]).all()
      assert (b[..., :2] >= -1e-4).all() and (b[..., 2:] <= 32 + 1e-4).all()
    assert len(v["qa"]) >= len(v["objects"])


def test_moving_shapes_default_videos_stay_the_same():
  """The videos other families read (video QA) are pinned; `objects` only narrows the count."""
  import hashlib
  for hard, digest, captions in [
      (False, "defefda6441a3471", ["a yellow triangle moves up", "a white triangle moves right",
                                   "a red square moves left"]),
      (True, "2fde129171dc5c65", ["a green circle stays still", "a green circle moves down"])]:
    v = moving_shapes.video(0, "train", 5, hard=hard)
    assert hashlib.sha256(v["frames"].tobytes()).hexdigest()[:16] == digest
    assert v["captions"] == captions
  assert {len(moving_shapes.video(0, "test", i, objects=(2, 2))["objects"])
          for i in range(10)} == {2}


def test_retrieval_layout_and_bit_exact_resume():
  train = data.get("moving_shapes_retrieval")(MS, "train")
  gallery = data.get("moving_shapes_retrieval")(MS, "test")
  queries = data.get("moving_shapes_retrieval")(MS, "test_text")
  vids = [moving_shapes.video(0, "test", i, frames=16) for i in range(6)]
  assert len(gallery.source) == 6 and len(queries.source) == sum(len(v["captions"]) for v in vids)
  ex = gallery.source[2]
  assert (ex["video"] == vids[2]["frames"][video_lib.uniform_indices(16, 8)]).all()
  q = queries.source[0]
  assert q["video_index"] == 0
  ids, _ = moving_shapes.tokenize([vids[0]["captions"][0]], 12)
  assert (q["text"] == ids[0]).all()
  a = pipeline.TrainBatches(train, 4, seed=5)
  it = pipeline.TrainIterator(a, 0, num_threads=1)
  straight = [next(it) for _ in range(4)]
  resumed = pipeline.TrainIterator(pipeline.TrainBatches(train, 4, seed=5), 2, num_threads=1)
  for want in straight[2:]:
    got = next(resumed)
    assert all((got[k] == want[k]).all() for k in want)
  # head-tail sampling draws differently for another step of the same examples
  assert any(not (straight[0]["video"] == straight[k]["video"]).all() for k in (1, 2, 3))


def test_grounding_layout_boxes_are_the_motion_tube():
  ds = data.get("moving_shapes_grounding")(dict(train_size=4, hard=True), "train")
  items = ds.info["items"]
  for j in range(len(ds.source)):
    i, k = items[j]
    v = moving_shapes.video(0, "train", i, hard=True)
    o, ex = v["objects"][k], ds.source[j]
    assert (ex["start"], ex["end"]) == (o.start, o.end)
    assert ex["box_mask"].sum() == o.end - o.start + 1
    b = v["boxes"][k, o.start] / 32
    want = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]]
    np.testing.assert_allclose(ex["boxes"][o.start], want, atol=1e-6)
  assert ds.element_spec["boxes"] == ((8, 4), np.float32)


def test_short_video_message():
  with pytest.raises(video_lib.ShortVideoError, match=r"'clip7' has 5 frames, fewer than the 8"):
    video_lib.clip(np.zeros((5, 4, 4, 3), np.uint8), 8, name="'clip7'")
  v, m = video_lib.clip(np.ones((5, 4, 4, 3), np.uint8), 8, pad_short=True)
  assert m.tolist() == [True] * 5 + [False] * 3 and v[5:].max() == 0


def test_empty_tube_message():
  with pytest.raises(ValueError, match="tube is empty"):
    video_lib.grounding_example(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 4)),
                                np.zeros(4, bool), 4, "video 'x'")


def _frames(n, seed):
  return np.random.default_rng(seed).integers(0, 255, (n, 12, 12, 3)).astype(np.uint8)


def _fake_msrvtt(root):
  """MSR-VTT in CLIP4Clip's layout: a frame folder, a GIF, captions and the 1k-A style csvs."""
  vids = root / "videos"
  os.makedirs(vids / "video0")
  for t, f in enumerate(_frames(6, 0)):
    Image.fromarray(f).save(vids / "video0" / f"{t:04d}.png")
  import imageio.v3 as iio
  iio.imwrite(vids / "video1.gif", _frames(4, 1), duration=500, loop=0)  # 2 fps, 2 s
  ann = root / "ann"
  os.makedirs(ann)
  with open(ann / "MSRVTT_data.json", "w") as f:
    json.dump({"sentences": [{"video_id": "video0", "caption": "a man sings"},
                             {"video_id": "video0", "caption": "someone sings"},
                             {"video_id": "video1", "caption": "a cat runs"}]}, f)
  with open(ann / "MSRVTT_train.9k.csv", "w") as f:
    csv.writer(f).writerows([["video_id"], ["video0"], ["video1"]])
  with open(ann / "MSRVTT_JSFUSION_test.csv", "w") as f:
    csv.writer(f).writerows([["key", "vid_key", "video_id", "sentence"],
                             ["ret0", "msr1", "video1", "a cat runs"]])
  return vids, ann


def test_prep_videos_and_msrvtt_builder(tmp_path):
  vids, ann = _fake_msrvtt(tmp_path)
  assert prep_video.prepare_videos(str(vids), str(tmp_path / "rec"), fps=1.0, size=12,
                                   source_fps=2.0) == 2
  cfg = dict(data_dir=str(tmp_path / "rec"), ann_dir=str(ann), num_frames=2, tokenizer="words",
             max_words=8)
  train = data.get("msrvtt")(cfg, "train")
  assert len(train.source) == 3
  ex = train.eval_preprocess(train.source[0])
  # frame folder at 2 fps -> 1 fps keeps frames 0, 2, 4; a 2-frame clip takes the first and last
  assert (ex["video"] == _frames(6, 0)[[0, 4]]).all()
  test = data.get("msrvtt")(cfg, "test")
  assert len(test.source) == 1 and test.source[0]["video"].shape == (2, 12, 12, 3)
  text = data.get("msrvtt")(cfg, "test_text").source[0]
  tok = video_lib.WordTokenizer.from_texts(["a man sings", "someone sings", "a cat runs"], 8)
  assert (text["text"] == tok(["a cat runs"])[0][0]).all() and text["video_index"] == 0
  with pytest.raises(video_lib.ShortVideoError, match="'video1' has 2 frames"):
    data.get("msrvtt")(dict(cfg, num_frames=3), "test").source[0]


def test_caption_file_naming_missing_video(tmp_path):
  vids, ann = _fake_msrvtt(tmp_path)
  prep_video.prepare_videos(str(vids), str(tmp_path / "rec"), fps=1.0, size=12, source_fps=2.0)
  with open(ann / "MSRVTT_JSFUSION_test.csv", "a") as f:
    csv.writer(f).writerow(["ret1", "msr9", "video9", "a dog"])
  with pytest.raises(KeyError, match=r"MSRVTT_JSFUSION_test.csv names video 'video9', which is "
                     r"not among the 2 videos"):
    data.get("msrvtt")(dict(data_dir=str(tmp_path / "rec"), ann_dir=str(ann),
                            tokenizer="words"), "test")


def test_prep_hcstvg_follows_tubedetr_frames(tmp_path):
  vids = tmp_path / "video" / "part1"
  os.makedirs(vids / "v0")
  frames = _frames(40, 3)  # 40 frames over HC-STVG's 20 s: 2 fps source
  for t, f in enumerate(frames):
    Image.fromarray(f).save(vids / "v0" / f"{t:04d}.png")
  ann = tmp_path / "anno"
  os.makedirs(ann)
  bbox = [[1, 2, 4, 5]] * 10
  a = {"v0.mp4": dict(img_num=40, width=12, height=12, st_frame=8, bbox=bbox, caption="he walks",
                      st_time=4, ed_time=9)}
  for name in ("train.json", "test.json"):
    with open(ann / name, "w") as f:
      json.dump(a, f)
  prep_video.prepare_grounding("hcstvg", str(tmp_path / "video"), str(ann), str(tmp_path / "rec"),
                               fps=1.0, size=12, max_frames=16)
  keep = prep_video.tubedetr_frames(40, 1.0, 16)
  every_other = list(range(0, 40, 2))  # 1 fps of a 2 fps source, then 16 of those 20 kept evenly
  assert keep == [every_other[(j * 20) // 16] for j in range(16)]
  ds = data.get("hcstvg")(dict(data_dir=str(tmp_path / "rec"), tokenizer="words"), "test")
  ex = ds.source[0]
  inside = [8 <= f < 18 for f in keep]
  assert ex["box_mask"][:len(keep)].tolist() == inside
  np.testing.assert_allclose(ex["boxes"][inside.index(True)], [3 / 12, 4.5 / 12, 4 / 12, 5 / 12],
                             atol=1e-6)
  assert (ex["video"][:len(keep)] == frames[keep]).all()
  with open(ann / "test.json", "w") as f:
    json.dump({"v0.mp4": dict(a["v0.mp4"], bbox=[])}, f)
  with pytest.raises(ValueError, match="empty tube"):
    prep_video.prepare_grounding("hcstvg", str(tmp_path / "video"), str(ann),
                                 str(tmp_path / "rec2"), fps=1.0, size=12)


def test_caption_files_of_didemo_lsmdc_msvd(tmp_path):
  import pickle
  from ml_pipelines.data import video_text
  with open(tmp_path / "test_list.txt", "w") as f:
    f.write("v1\nv2\n")
  with open(tmp_path / "test_data.json", "w") as f:
    json.dump([{"video": "v1", "description": "a dog runs.", "times": [[0, 1]]},
               {"video": "v9", "description": "not listed", "times": [[0, 1]]},
               {"video": "v1", "description": "it stops.", "times": [[2, 3]]},
               {"video": "v2", "description": "rain.", "times": [[0, 0]]}], f)
  pairs, _ = video_text.captions("didemo", str(tmp_path), "test")
  assert pairs == [("v1", "a dog runs. it stops."), ("v2", "rain.")]  # one paragraph per video
  with open(tmp_path / "LSMDC16_challenge_1000_publictect.csv", "w") as f:
    f.write("c1\t0\t1\t0\t1\tSOMEONE smiles.\nc2\t0\t1\t0\t1\tHe waves.\n")
  assert video_text.captions("lsmdc", str(tmp_path), "test")[0] == [("c1", "SOMEONE smiles."),
                                                                   ("c2", "He waves.")]
  with open(tmp_path / "raw-captions.pkl", "wb") as f:
    pickle.dump({"v1": [["a", "cat"], ["the", "cat", "sits"]], "v2": [["rain"]]}, f)
  assert video_text.captions("msvd", str(tmp_path), "test")[0] == [
      ("v1", "a cat"), ("v1", "the cat sits"), ("v2", "rain")]


def _fake_vidstg(root):
  """VidSTG in TubeDETR's preprocessed layout over two VidOR videos stored as frame folders (10 fps
  sources): three sentences on one segment of video 100 (two targets and a tube shorter than a
  5 fps step) and one on video 200."""
  frames = {"100": _frames(30, 4), "200": _frames(12, 5)}
  for folder, vid in (("0000", "100"), ("0001", "200")):
    os.makedirs(root / "video" / folder / vid)
    for t, f in enumerate(frames[vid]):
      Image.fromarray(f).save(root / "video" / folder / vid / f"{t:04d}.png")
  seg = dict(original_video_id="100", video_path="0000/100.mp4", fps=10, width=12, height=12,
             frame_count=30, start_frame=2, end_frame=22)
  videos = [dict(seg, video_id=0, tube_start_frame=7, tube_end_frame=12, target_id=0,
                 caption="the adult holds a dog", qtype="declarative"),
            dict(seg, video_id=1, tube_start_frame=7, tube_end_frame=12, target_id=1,
                 caption="what is held by the adult", qtype="interrogative"),
            dict(seg, video_id=2, tube_start_frame=7, tube_end_frame=8, target_id=0,
                 caption="a blink", qtype="declarative"),
            dict(original_video_id="200", video_path="0001/200.mp4", fps=10, width=12, height=12,
                 frame_count=12, start_frame=0, end_frame=12, video_id=3, tube_start_frame=0,
                 tube_end_frame=4, target_id=5, caption="a toy falls", qtype="declarative")]
  box = {str(f): {"bbox": [1, 2, 4 + f % 3, 5]} for f in range(30)}
  traj = {"100": {"0": box, "1": box}, "200": {"5": box}}
  ann = root / "ann"
  os.makedirs(ann)
  for split in ("train", "val", "test"):
    with open(ann / f"{split}.json", "w") as f:
      json.dump({"videos": videos, "trajectories": traj}, f)
  return frames, videos, ann


def test_prep_vidstg_follows_tubedetr_frames_and_shares_segments(tmp_path):
  frames, videos, ann = _fake_vidstg(tmp_path)
  counts = prep_video.prepare_vidstg(str(tmp_path / "video"), str(ann), str(tmp_path / "rec"),
                                     fps=5.0, size=12, max_frames=16)
  assert counts == {"train": 3, "val": 3, "test": 3}  # the 1-frame tube falls between kept frames
  keep = prep_video.vidstg_frames(videos[0], 5.0, 16)
  assert keep == list(range(2, 22, 2))  # 10 fps -> 5 fps from start_frame 2, end 22 excluded
  with open(tmp_path / "rec" / "train.json") as f:
    meta = json.load(f)
  assert meta["skipped"] == [2] and meta["qtypes"][1] == "interrogative"
  assert len(data.records.RecordSource(str(tmp_path / "rec"), "train_clips")) == 2
  ds = data.get("vidstg")(dict(data_dir=str(tmp_path / "rec"), tokenizer="words"), "train")
  a, b, c = (ds.source[i] for i in range(3))
  assert (a["video"][:10] == frames["100"][keep]).all() and not a["frame_mask"][10:].any()
  assert (b["video"] == a["video"]).all()
  assert a["box_mask"][:10].tolist() == [7 <= f < 12 for f in keep]
  assert (int(a["start"]), int(a["end"])) == (3, 4)  # frames 8 and 10
  w = 4 + 8 % 3  # frame 8's box: x 1, y 2, w 6, h 5 at 12 px
  np.testing.assert_allclose(a["boxes"][3], [(1 + w / 2) / 12, 4.5 / 12, w / 12, 5 / 12],
                             atol=1e-6)
  assert (c["video"][:6] == frames["200"][[0, 2, 4, 6, 8, 10]]).all()
  assert c["box_mask"][:6].tolist() == [True, True, False, False, False, False]
  # the real config's data block (200 frames, CLIP BPE of 77) reads the same records
  from configs.video import stvgformer
  from models.clip_tokenizer import tokenize
  cfg = stvgformer.get_config("vidstg").data
  real = data.get(cfg.name)(dict(cfg.to_dict(), data_dir=str(tmp_path / "rec")), cfg.eval_split)
  r = real.source[1]
  assert r["video"].shape == (200, 12, 12, 3) and r["frame_mask"].sum() == 10
  np.testing.assert_array_equal(r["text"], tokenize(["what is held by the adult"], 77)[0])


def test_vidstg_messages(tmp_path):
  frames, videos, ann = _fake_vidstg(tmp_path)
  run = lambda: prep_video.prepare_vidstg(  # noqa: E731
      str(tmp_path / "video"), str(ann), str(tmp_path / "rec"), fps=5.0, size=12)
  with open(ann / "train.json", "w") as f:
    json.dump([{"vid": "100", "questions": [], "captions": []}], f)  # the raw VidSTG file
  with pytest.raises(ValueError, match="preproc_vidstg.py"):
    run()
  for change, err, msg in [
      (dict(tube_end_frame=7), ValueError, r"sentence 0 \('the adult holds a dog'.*empty tube"),
      (dict(video_path="0009/900.mp4"), FileNotFoundError, "'0009/900.mp4'.* not under")]:
    with open(ann / "train.json", "w") as f:
      json.dump({"videos": [dict(videos[0], **change)],
                 "trajectories": {"100": {"0": {"8": {"bbox": [1, 2, 3, 4]}}}}}, f)
    with pytest.raises(err, match=msg):
      run()

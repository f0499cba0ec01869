"""16-bit PNG files, read and written at full precision (Pillow reduces 16-bit colour to 8 bits).

PNG (ISO/IEC 15948): chunks IHDR, IDAT (zlib stream of rows, each prefixed by a filter type:
0 none, 1 sub, 2 up, 3 average, 4 Paeth, undone byte-wise against the left pixel `a`, the pixel
above `b` and the one above-left `c`), IEND; samples are big-endian. Colour types 0 (grey),
4 (grey + alpha), 2 (RGB), 6 (RGBA); interlaced files are refused with a message.
"""
from __future__ import annotations

import struct
import zlib

import numba
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # colour type -> samples per pixel


def bit_depth(path: str) -> int | None:
  """The bit depth in a PNG's header, or None if `path` is not a PNG."""
  with open(path, "rb") as f:
    head = f.read(33)
  if not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
    return None
  return head[24]


@numba.njit(cache=True)
def _unfilter(data, height, stride, bpp):
  out = np.zeros((height, stride), np.uint8)
  pos = 0
  for y in range(height):
    kind = data[pos]
    pos += 1
    if kind > 4:
      return out, y
    for x in range(stride):
      a = np.int32(out[y, x - bpp]) if x >= bpp else 0
      b = np.int32(out[y - 1, x]) if y > 0 else 0
      c = np.int32(out[y - 1, x - bpp]) if (y > 0 and x >= bpp) else 0
      v = np.int32(data[pos + x])
      if kind == 1:
        v += a
      elif kind == 2:
        v += b
      elif kind == 3:
        v += (a + b) // 2
      elif kind == 4:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        v += a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
      out[y, x] = v & 255
    pos += stride
  return out, -1


def read(path: str) -> np.ndarray:
  """A 16-bit PNG as uint16 `[H, W]` (grey) or `[H, W, C]` (C = 2, 3, 4)."""
  with open(path, "rb") as f:
    blob = f.read()
  if not blob.startswith(SIGNATURE):
    raise ValueError(f"{path} is not a PNG file.")
  pos, idat, header = len(SIGNATURE), [], None
  while pos + 8 <= len(blob):
    length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
    body = blob[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
      header = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
      idat.append(body)
    elif kind == b"IEND":
      break
    pos += 12 + length
  if header is None:
    raise ValueError(f"{path} has no PNG header.")
  width, height, depth, colour, _, _, interlace = header
  if depth != 16 or colour not in CHANNELS:
    raise ValueError(f"{path}: expected a 16-bit grey/RGB(A) PNG, got depth {depth}, colour "
                     f"type {colour}.")
  if interlace:
    raise ValueError(f"{path} is an interlaced 16-bit PNG; save it without interlacing.")
  channels = CHANNELS[colour]
  stride = width * channels * 2
  try:
    data = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
  except zlib.error as e:
    raise ValueError(f"{path}: corrupt PNG data ({e}).") from None
  if data.size < height * (stride + 1):
    raise ValueError(f"{path}: truncated PNG data.")
  rows, bad_row = _unfilter(data, height, stride, channels * 2)
  if bad_row >= 0:
    raise ValueError(f"{path}: unknown PNG filter type in row {bad_row}.")
  out = rows.view(">u2").astype(np.uint16)
  return out.reshape(height, width) if channels == 1 else out.reshape(height, width, channels)


def write(path: str, image: np.ndarray) -> None:
  """Writes uint16 `[H, W]` or `[H, W, C]` (C = 2, 3, 4) as a 16-bit PNG (no filtering)."""
  image = np.asarray(image, np.uint16)
  height, width = image.shape[:2]
  channels = 1 if image.ndim == 2 else image.shape[2]
  colour = {v: k for k, v in CHANNELS.items()}[channels]
  rows = image.astype(">u2").reshape(height, -1).view(np.uint8)
  raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
  with open(path, "wb") as f:
    f.write(SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))

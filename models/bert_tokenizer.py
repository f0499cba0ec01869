"""BERT's WordPiece tokenizer (Devlin et al. 2019; google-research/bert `tokenization.py`, the
`BertTokenizer` of Hugging Face transformers), over a `vocab.txt` (one token a line, id = line
number; bert-base-uncased's has [PAD] = 0, [UNK] = 100, [CLS] = 101, [SEP] = 102).

Basic tokenization: drop NUL, U+FFFD and control characters, map whitespace to spaces, put spaces
around CJK ideographs, split on whitespace; uncased: lower-case and strip accents (NFD, drop
combining marks); split every punctuation character off as its own token. WordPiece: greedy
longest-match-first over the vocabulary, continuation pieces prefixed "##", a word with no
segmentation (or over 100 characters) becomes [UNK].

    tok = BertTokenizer.from_file("bert-base-uncased/vocab.txt")
    ids, mask = tok(["what is the man doing?"], 40)  # "[CLS] pieces [SEP]", padded with [PAD]
"""
from __future__ import annotations

import unicodedata
from typing import Sequence

import numpy as np

MAX_WORD_CHARS = 100


def _is_punctuation(ch: str) -> bool:
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
  return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_cjk(cp: int) -> bool:
  return any(lo <= cp <= hi for lo, hi in (
      (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
      (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokens(text: str, lower: bool = True) -> list[str]:
  """Whitespace- and punctuation-split words of `text` (module docstring)."""
  out = []
  for ch in text:
    cp = ord(ch)
    if cp == 0 or cp == 0xFFFD or _is_control(ch):
      continue
    if ch.isspace() or unicodedata.category(ch) == "Zs":
      out.append(" ")
    elif _is_cjk(cp):
      out.append(f" {ch} ")
    else:
      out.append(ch)
  words = []
  for word in "".join(out).split():
    if lower:
      word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                     if unicodedata.category(c) != "Mn")
    piece = ""
    for ch in word:
      if _is_punctuation(ch):
        words += [piece, ch] if piece else [ch]
        piece = ""
      else:
        piece += ch
    if piece:
      words.append(piece)
  return words


class BertTokenizer:
  """`tokenizer(texts, length) -> (ids int32 [n, length], mask bool [n, length])`."""

  def __init__(self, vocab: Sequence[str], lower: bool = True):
    self.vocab, self.lower = tuple(vocab), lower
    self.index = {w: i for i, w in enumerate(self.vocab)}
    missing = [w for w in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if w not in self.index]
    if missing:
      raise ValueError(f"BERT vocabulary of {len(self.vocab)} tokens has no {missing}.")
    self.pad, self.unk = self.index["[PAD]"], self.index["[UNK]"]
    self.cls, self.sep = self.index["[CLS]"], self.index["[SEP]"]

  @classmethod
  def from_file(cls, path: str, lower: bool = True) -> "BertTokenizer":
    with open(path, encoding="utf-8") as f:
      return cls([line.rstrip("\n") for line in f], lower)

  def wordpieces(self, word: str) -> list[int]:
    if len(word) > MAX_WORD_CHARS:
      return [self.unk]
    pieces, start = [], 0
    while start < len(word):
      end = len(word)
      while end > start:
        piece = word[start:end] if start == 0 else "##" + word[start:end]
        if piece in self.index:
          pieces.append(self.index[piece])
          break
        end -= 1
      if end == start:
        return [self.unk]
      start = end
    return pieces

  def encode(self, text: str) -> list[int]:
    return [i for w in basic_tokens(text, self.lower) for i in self.wordpieces(w)]

  def __call__(self, texts: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(texts), length), self.pad, np.int32)
    mask = np.zeros((len(texts), length), bool)
    for r, text in enumerate(texts):
      row = [self.cls] + self.encode(text)[:length - 2] + [self.sep]
      ids[r, :len(row)], mask[r, :len(row)] = row, True
    return ids, mask

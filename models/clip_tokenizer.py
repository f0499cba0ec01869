"""CLIP's byte-level BPE tokenizer (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision", Sec. 2.4), as openai/CLIP `simple_tokenizer.py` and
mlfoundations/open_clip `tokenizer.py` compute it, without torch, ftfy or `regex` at run time.

The merge table `models/assets/bpe_simple_vocab_16e6.txt.gz` is the file open_clip ships (MIT
licence, `models/assets/LICENSE-open_clip.txt`): 48,894 merges over 256 byte symbols and their
end-of-word forms, then `<start_of_text>` = 49406 and `<end_of_text>` = 49407 (vocabulary 49,408).

    tokenize(["a photo of a cat.", "two dogs"])   # np.int32 [2, 77]: sot, BPE ids, eot, zeros

Text cleaning (open_clip's `lower` mode): `ftfy.fix_text`, HTML-unescape twice, collapse
whitespace, lower-case. Of ftfy's repairs only those that change well-formed Unicode text are
applied here (NFC normalisation, curly quotes to straight ones, Latin ligatures); ftfy's mojibake
repair (text decoded with the wrong codec) is not: pass text that is valid Unicode.
"""
from __future__ import annotations

import functools
import gzip
import html
import os
import re
import sys
import unicodedata
from typing import Sequence

import numpy as np

VOCAB_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets",
                          "bpe_simple_vocab_16e6.txt.gz")
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CONTEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # lines 1 .. 48894 of the merge file
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi",
                            "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st", "\u0132": "IJ",
                            "\u0133": "ij", "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj",
                            "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj"})


def bytes_to_unicode() -> dict[int, str]:
  """Byte -> printable character: the 188 printable Latin-1 bytes map to themselves, the others to
  256, 257, ... (so no BPE symbol is whitespace or a control character)."""
  bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1)))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def _category_class(prefixes: tuple[str, ...]) -> str:
  """A `re` character class body of every code point whose Unicode category starts with one of
  `prefixes` (`regex`'s `\\p{L}` / `\\p{N}`, which the standard `re` lacks)."""
  ranges, start, prev = [], None, None
  for cp in range(sys.maxunicode + 1):
    if unicodedata.category(chr(cp)).startswith(prefixes):
      if start is None:
        start = cp
      prev = cp
    elif start is not None:
      ranges.append((start, prev))
      start = None
  if start is not None:
    ranges.append((start, prev))
  esc = lambda cp: f"\\U{cp:08x}"
  return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


@functools.lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
  """open_clip's pre-tokenisation: special tokens, English clitics, letter runs, single digits,
  runs of other non-space symbols (case-insensitive)."""
  letters, numbers = _category_class(("L",)), _category_class(("N",))
  special = "|".join(SPECIAL_TOKENS)
  return re.compile(special + rf"""|'s|'t|'re|'ve|'m|'ll|'d|[{letters}]+|[{numbers}]"""
                    rf"""|[^\s{letters}{numbers}]+""", re.IGNORECASE)


def clean(text: str) -> str:
  """open_clip's `lower` cleaning (see the module docstring for the ftfy subset)."""
  text = unicodedata.normalize("NFC", text).translate(_QUOTES).translate(_LIGATURES)
  text = html.unescape(html.unescape(text)).strip()
  return " ".join(text.split()).strip().lower()


class Tokenizer:
  """Byte-level BPE with CLIP's merge table; `encode` gives ids without sot/eot."""

  def __init__(self, vocab_file: str = VOCAB_FILE):
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
    with gzip.open(vocab_file) as f:
      lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
    vocab = list(self.byte_encoder.values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)
    self.encoder = {v: i for i, v in enumerate(vocab)}
    self.decoder = {i: v for v, i in self.encoder.items()}
    self.bpe_ranks = {m: i for i, m in enumerate(merges)}
    self.sot_token_id, self.eot_token_id = (self.encoder[t] for t in SPECIAL_TOKENS)
    self.vocab_size = len(self.encoder)
    self._cache = {t: t for t in SPECIAL_TOKENS}

  def bpe(self, token: str) -> str:
    """Greedy lowest-rank merging of one pre-token's symbols; space-separated BPE symbols."""
    if token in self._cache:
      return self._cache[token]
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    while len(word) > 1:
      pairs = set(zip(word[:-1], word[1:]))
      first, second = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
      if (first, second) not in self.bpe_ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
          merged.append(first + second)
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = tuple(merged)
    out = " ".join(word)
    self._cache[token] = out
    return out

  def encode(self, text: str) -> list[int]:
    ids = []
    for token in _pattern().findall(clean(text)):
      token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
      ids.extend(self.encoder[s] for s in self.bpe(token).split(" "))
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    text = "".join(self.decoder[int(i)] for i in ids)
    return (bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
            .replace("</w>", " "))

  def __call__(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH
               ) -> np.ndarray:
    """[N, context_length] int32: sot, ids, eot, zero padding; a text that does not fit is cut
    and its last kept position set to eot (open_clip's truncation)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.zeros((len(texts), context_length), np.int32)
    for row, text in enumerate(texts):
      ids = [self.sot_token_id] + self.encode(text) + [self.eot_token_id]
      if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = self.eot_token_id
      out[row, :len(ids)] = ids
    return out


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
  return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
  """`texts` as CLIP token ids, np.int32 [N, context_length] (the shipped merge table)."""
  return default_tokenizer()(texts, context_length)

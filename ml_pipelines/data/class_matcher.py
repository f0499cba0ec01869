"""Sentences -> multi-hot class labels by class-name matching (TaI-DPT / PVP's text-as-image data:
Guo et al., CVPR 2023, Sec. 3.3; code guozix/TaI-DPT and Jinx630/Pseudo-Visual-Prompt
`datasets/coco2014_distill.py`).

The official code lemmatises each sentence (NLTK POS tags + WordNet), then looks for every
synonym of every class as a whole-word phrase, compound (multi-word) names first, and removes a
matched phrase before the next name is tried (so "hot dog" does not also count as "dog"). Here the
lemmatiser is a rule-based noun singulariser (regular plurals -s / -es / -ies / -ves and the common
irregular ones), enough for class nouns, with no NLTK data to download; matching is as the code.

A synonyms file has one class per line: its names separated by commas, the first the class name
(`dog, puppy, doggy`); a class without a line matches its own name only.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child",
              "mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot",
              "knives": "knife", "wives": "wife", "leaves": "leaf", "wolves": "wolf",
              "buses": "bus", "glasses": "glass", "oxen": "ox", "dice": "die"}
_WORD = re.compile(r"[a-z0-9]+")


def lemma(word: str) -> str:
  """A noun's singular form (`dogs` -> `dog`, `buses` -> `bus`, `skies` -> `sky`)."""
  if word in _IRREGULAR:
    return _IRREGULAR[word]
  if len(word) > 4 and word.endswith("ies"):
    return word[:-3] + "y"
  if len(word) > 3 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
    return word[:-2]
  if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
    return word[:-1]
  return word


def words(text: str) -> list[str]:
  return [lemma(w) for w in _WORD.findall(text.lower())]


def read_synonyms(path: str) -> dict[str, list[str]]:
  out = {}
  with open(path) as f:
    for line in f:
      names = [n.strip() for n in line.split(",") if n.strip()]
      if names:
        out[names[0]] = names
  return out


class ClassMatcher:
  """`labels(sentence) -> int32 [C]`: 1 for every class one of whose names occurs in it."""

  def __init__(self, class_names: Sequence[str],
               synonyms: Mapping[str, Sequence[str]] | None = None):
    synonyms = synonyms or {}
    phrases = []
    for c, name in enumerate(class_names):
      for n in {name, name.replace("_", " "), *synonyms.get(name, ())}:
        phrases.append((tuple(words(n)), c))
    # compound names first (longest first), as the official matcher
    self.phrases = sorted(set(phrases), key=lambda p: (-len(p[0]), p[0]))
    self.num_classes = len(class_names)

  def labels(self, sentence: str) -> np.ndarray:
    toks = words(sentence)
    used = [False] * len(toks)
    y = np.zeros(self.num_classes, np.int32)
    for phrase, c in self.phrases:
      n = len(phrase)
      for i in range(len(toks) - n + 1):
        if tuple(toks[i:i + n]) == phrase and not any(used[i:i + n]):
          y[c] = 1
          used[i:i + n] = [True] * n
    return y

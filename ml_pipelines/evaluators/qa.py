"""Question-answering accuracy: overall and per question type, by class or by generated text.

* ``accuracy_by_type(correct, types)``: the mean of ``correct`` overall and within each question
  type (MSRVTT-QA / MSVD-QA report what / who / how / when / where; NExT-QA causal / temporal /
  descriptive), as ``{"accuracy": ..., "accuracy/<type>": ...}``.
  With ``groups`` (type -> group) it also reports each group: NExT-QA's codes (Xiao et al., CVPR
  2021; doc-doc/NExT-QA ``eval_mc.py``) fall in causal (CW why, CH how), temporal (TN before /
  after, TC when; TP is scored as TN there) and descriptive (DL location, DC count, DO other):
  ``NEXTQA_GROUPS``.
* Open-ended answers produced by a generator are scored by exact match after normalisation
  (``normalize_answer``): lower case, punctuation removed, the articles "a", "an", "the" dropped,
  whitespace collapsed -- the normalisation of SQuAD's official evaluation script (Rajpurkar et
  al. 2016), the usual convention for generated short answers. Several reference answers may be
  given per question; a prediction is correct if it matches any of them.
"""
from __future__ import annotations

import re
import string
from typing import Iterable, Sequence

import numpy as np

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
  """Lower case, no punctuation, no articles, single spaces."""
  text = _PUNCTUATION.sub(" ", text.lower())
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(predictions: Sequence[str], references: Sequence[str | Iterable[str]]
                ) -> np.ndarray:
  """``[N]`` bool: prediction i equals (one of) reference(s) i after `normalize_answer`."""
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions for {len(references)} questions.")
  out = []
  for pred, refs in zip(predictions, references):
    refs = [refs] if isinstance(refs, str) else list(refs)
    out.append(normalize_answer(pred) in {normalize_answer(r) for r in refs})
  return np.asarray(out, bool)


NEXTQA_GROUPS = {"CW": "causal", "CH": "causal", "TN": "temporal", "TC": "temporal",
                 "DL": "descriptive", "DC": "descriptive", "DO": "descriptive"}
NEXTQA_MERGED = {"TP": "TN"}  # eval_mc.py: "combine temporal qns of previous and next as 'TN'"


def accuracy_by_type(correct, types: Sequence[str] | None = None,
                     groups: dict[str, str] | None = None) -> dict[str, float]:
  """``{"accuracy": mean, "accuracy/<type>": mean within the type}`` (types sorted by name), and
  ``"accuracy/<group>"`` over the types of each group of ``groups``."""
  correct = np.asarray(correct, np.float64)
  report = {"accuracy": float(correct.mean()) if correct.size else float("nan")}
  if types is not None:
    types = np.asarray(types)
    if types.shape != correct.shape:
      raise ValueError(f"{types.shape[0]} question types for {correct.shape[0]} answers.")
    for name in sorted(set(types.tolist())):
      report[f"accuracy/{name}"] = float(correct[types == name].mean())
    for group in sorted(set((groups or {}).values())):
      inside = np.isin(types, [t for t, g in groups.items() if g == group])
      if inside.any():
        report[f"accuracy/{group}"] = float(correct[inside].mean())
  return report

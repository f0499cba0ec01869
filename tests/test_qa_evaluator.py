"""QA accuracy (ml_pipelines/evaluators/qa.py) against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from ml_pipelines.evaluators import qa


def test_normalisation_follows_the_squad_rules():
  assert qa.normalize_answer("  The Red-Circle, moves LEFT! ") == "red circle moves left"
  assert qa.normalize_answer("an apple") == "apple"
  assert qa.normalize_answer("theatre") == "theatre"  # an article only as a whole word


def test_exact_match_with_several_references():
  got = qa.exact_match(["Red circle", "moves up", "a dog"],
                       [["red circle", "circle"], "moves left", ("cat", "the dog")])
  np.testing.assert_array_equal(got, [True, False, True])
  with pytest.raises(ValueError, match="2 predictions for 3 questions"):
    qa.exact_match(["a", "b"], ["a", "b", "c"])


def test_accuracy_by_type_by_hand():
  report = qa.accuracy_by_type([1, 0, 1, 1, 0], ["what", "what", "who", "what", "who"])
  assert report == {"accuracy": 0.6, "accuracy/what": 2 / 3, "accuracy/who": 0.5}
  assert qa.accuracy_by_type([True, False]) == {"accuracy": 0.5}

"""The one set of metrics: a worked example, "no category" as a column, and `device classify`'s tally on it."""
from __future__ import annotations

import numpy as np

from device import evaluation
from device.classifier import Category
from device.classify import ImageResult, Tally

LABELS = ("a", "b", "c")


def test_metrics_on_a_worked_example():
    counts = evaluation.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1], 3)
    np.testing.assert_array_equal(counts, [[2, 1, 0], [0, 2, 0], [0, 1, 0]])
    assert evaluation.accuracy(counts) == round(4 / 6, 4)
    assert evaluation.per_label(counts, LABELS) == {
        "a": {"precision": 1.0, "recall": round(2 / 3, 4), "support": 3},
        "b": {"precision": 0.5, "recall": 1.0, "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "support": 1},
    }
    assert evaluation.accuracy(np.zeros((3, 3), dtype=int)) == 0.0


def test_a_column_for_no_category_counts_against_accuracy_and_recall():
    """Images with no category are misses: they stay in the denominator of accuracy and recall."""
    counts = evaluation.confusion_matrix([0, 0, 1, 1], [0, 3, 1, 3], 4)[:-1]
    assert counts.shape == (3, 4)
    assert evaluation.accuracy(counts) == 0.5
    scores = evaluation.per_label(counts, LABELS)
    assert scores["a"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "support": 0}


def test_device_classify_tally_reports_the_same_numbers():
    tally = Tally(LABELS, evaluate=True)
    top = {name: (Category(LABELS.index(name), name, 0.9),) for name in LABELS}
    for path, predicted in [("a/1.jpg", "a"), ("a/2.jpg", None), ("a/3.jpg", "b"), ("b/1.jpg", "b"),
                            ("c/1.jpg", "c"), ("c/2.jpg", "c")]:
        tally.add(ImageResult(path, top[predicted] if predicted else (), 1.0))
    tally.add(ImageResult("b/broken.jpg", error="not an image"))
    summary = tally.summary()
    assert summary["images"] == 6 and summary["unclassified"] == 1
    assert summary["confusion"]["matrix"] == [[1, 1, 0, 1], [0, 1, 0, 0], [0, 0, 2, 0]]
    assert summary["accuracy"] == round(4 / 6, 4)
    assert summary["recall"] == {"a": round(1 / 3, 4), "b": 1.0, "c": 1.0}

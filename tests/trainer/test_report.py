"""The report's numbers on a worked example, and the files it writes."""
from __future__ import annotations

import json

import numpy as np

from trainer import report


def test_metrics_on_a_worked_example():
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 1, 1]
    counts = report.confusion_matrix(truth, predicted, 3)
    np.testing.assert_array_equal(counts, [[2, 1, 0], [0, 2, 0], [0, 1, 0]])
    assert report.accuracy(counts) == round(4 / 6, 4)
    assert report.per_label(counts, ["a", "b", "c"]) == {
        "a": {"precision": 1.0, "recall": round(2 / 3, 4), "support": 3},
        "b": {"precision": 0.5, "recall": 1.0, "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "support": 1},
    }


def test_report_files_are_json_and_png(tmp_path):
    counts = np.array([[5, 1], [2, 7]])
    history = {"loss": [1.0, 0.7, 0.5], "accuracy": [0.5, 0.7, 0.8]}
    written = report.write_report(tmp_path / "out", {"float_accuracy": 0.8}, ["cat", "dog"], counts, history)
    assert sorted(p.name for p in written) == ["confusion_matrix.png", "report.json", "training_curves.png"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"float_accuracy": 0.8}
    for name in ("confusion_matrix.png", "training_curves.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

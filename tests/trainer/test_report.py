"""The files the report writes (its numbers are `device.evaluation`'s, tested in tests/device)."""
from __future__ import annotations

import json

import numpy as np

from trainer import report


def test_report_files_are_json_and_png(tmp_path):
    counts = np.array([[5, 1], [2, 7]])
    history = {"loss": [1.0, 0.7, 0.5], "accuracy": [0.5, 0.7, 0.8]}
    written = report.write_report(tmp_path / "out", {"float_accuracy": 0.8}, ["cat", "dog"], counts, history)
    assert sorted(p.name for p in written) == ["confusion_matrix.png", "report.json", "training_curves.png"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"float_accuracy": 0.8}
    for name in ("confusion_matrix.png", "training_curves.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

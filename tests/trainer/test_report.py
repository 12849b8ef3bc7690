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


def test_the_contact_sheet_shows_the_misclassified_photos_and_the_curves_the_kept_epoch(tmp_path, photo):
    from PIL import Image

    history = {"loss": [1.0, 0.7, 0.6, 0.65], "accuracy": [0.5, 0.7, 0.8, 0.8],
               "val_loss": [1.1, 0.8, 0.7, 0.75], "val_accuracy": [0.5, 0.6, 0.7, 0.7]}
    wrong = [(str(photo), "daisy", "roses", 0.91), (str(tmp_path / "gone.jpg"), "tulips", "daisy", 0.4)]
    written = report.write_report(tmp_path, {}, ["daisy", "roses", "tulips"], np.eye(3, dtype=int), history,
                                  best_epoch=3, misclassified=wrong)
    assert sorted(p.name for p in written) == ["confusion_matrix.png", "misclassified.png", "report.json",
                                               "training_curves.png"]
    sheet = Image.open(tmp_path / "misclassified.png")
    assert sheet.width > 300 and sheet.height > 200
    # the photo itself is on the sheet: many colours, not a blank page of titles
    assert len(np.unique(np.asarray(sheet.convert("RGB")).reshape(-1, 3), axis=0)) > 1000


def test_without_mistakes_there_is_no_contact_sheet(tmp_path):
    written = report.write_report(tmp_path, {}, ["a", "b"], np.eye(2, dtype=int), None, misclassified=[])
    assert "misclassified.png" not in [p.name for p in written]

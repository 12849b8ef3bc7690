"""What a run leaves beside the model: report.json, a confusion-matrix plot and the training curves.

Needs no TensorFlow. The metrics are `device.evaluation`'s (re-exported here for the trainer's callers), the
same `device classify --eval` reports.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from device.atomic import atomic_write
from device.evaluation import accuracy, confusion_matrix, per_label  # noqa: F401 (re-exported)

REPORT_FILE = "report.json"
CONFUSION_FILE = "confusion_matrix.png"
CURVES_FILE = "training_curves.png"


def write_report(export_dir: str | os.PathLike, report: Mapping, labels: Sequence[str], counts: np.ndarray,
                 history: Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    """Write report.json, the confusion matrix of `counts` and (given a Keras history) the training curves."""
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    files = {REPORT_FILE: (json.dumps(report, indent=2) + "\n").encode(),
             CONFUSION_FILE: _confusion_png(counts, labels)}
    if history:
        files[CURVES_FILE] = _curves_png(history)
    for name, content in files.items():
        with atomic_write(export_dir / name, "wb") as file:
            file.write(content)
    return [export_dir / name for name in files]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    figure.clf()
    _figure().close(figure)
    return buffer.getvalue()


def _confusion_png(counts: np.ndarray, labels: Sequence[str]) -> bytes:
    pyplot = _figure()
    size = 2.5 + 0.6 * len(labels)
    figure, axes = pyplot.subplots(figsize=(size, size))
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix (accuracy {accuracy(counts):.3f})")
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), value in np.ndenumerate(counts):
        axes.text(column, row, str(value), ha="center", va="center",
                  color="white" if value > threshold else "black")
    return _png(figure)


def _curves_png(history: Mapping[str, Sequence[float]]) -> bytes:
    pyplot = _figure()
    figure, (loss_axes, accuracy_axes) = pyplot.subplots(1, 2, figsize=(10, 4))
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--o")):
            if key in history:
                values = history[key]
                axes.plot(range(1, len(values) + 1), values, style, label=key.replace("val_", "validation "))
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_title(metric)
        axes.legend()
    return _png(figure)

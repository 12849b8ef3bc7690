"""Accuracy, precision, recall and the confusion matrix: one definition, numpy only.

`device classify --eval`, `trainer evaluate` and the training report all score a model with these,
so a number means the same wherever it is printed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """counts[true label, predicted label], `num_classes` × `num_classes`.

    A prediction that is no label (`device classify`'s "no category") can be counted as one more
    class that no image truly is; drop its row to keep a column for it.
    """
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts


def accuracy(counts: np.ndarray) -> float:
    """The share of images whose prediction is their true label (0 when there are none)."""
    return round(float(np.trace(counts) / counts.sum()), 4) if counts.sum() else 0.0


def per_label(counts: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and support of each label (0 where a label was never predicted or never true).

    `counts` may have more columns than labels: predictions that are no label.
    """
    hits = np.diag(counts)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    return {label: {"precision": round(float(hits[i] / predicted[i]) if predicted[i] else 0.0, 4),
                    "recall": round(float(hits[i] / actual[i]) if actual[i] else 0.0, 4),
                    "support": int(actual[i])}
            for i, label in enumerate(labels)}

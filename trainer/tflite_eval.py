"""Score a data set with an exported .tflite through the device's own engine, so numbers match the Pi's."""
from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from device import imaging
from device.classifier import Classifier
from device.errors import UserError
from trainer.data import DataLoader


class LabelsDifferError(UserError):
    """The model and the data folder do not name the same labels."""


def tflite_scores(model_path: str | os.PathLike, data: DataLoader, threads: int | None = None) -> np.ndarray:
    """Scores of the model for every image of `data`, columns in `data.index_to_label` order."""
    classifier = Classifier(model_path, threads=threads)
    missing = sorted(set(data.index_to_label) - set(classifier.labels))
    if missing:
        raise LabelsDifferError(f"the model has no label(s) {', '.join(missing)}; it knows "
                                f"{', '.join(classifier.labels)}")
    columns = [classifier.labels.index(label) for label in data.index_to_label]
    scores = np.empty((data.size, data.num_classes), dtype=np.float32)
    for row, (path, _) in enumerate(tqdm(data.items, desc="Evaluating .tflite", unit="img",
                                         disable=None, leave=False)):
        scores[row] = classifier.scores(imaging.decode(path))[columns]
    return scores

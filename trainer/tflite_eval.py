"""Score a data set with an exported .tflite through the device's own engine, so numbers match the Pi's."""
from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from device.classifier import Classifier
from device.errors import UserError
from trainer.data import DataLoader


class LabelsDifferError(UserError):
    """The model and the data folder do not name the same labels."""


def open_model(model_path: str | os.PathLike, labels_file: str | os.PathLike | None = None,
               threads: int | None = None) -> Classifier:
    """The device's classifier for `model_path`, with any error naming the file."""
    try:
        return Classifier(model_path, labels_file=labels_file, threads=threads)
    except UserError as error:
        if os.fspath(model_path) in str(error):
            raise
        raise UserError(f"{os.fspath(model_path)}: {error}") from None


def folder_label_columns(classifier: Classifier, data: DataLoader) -> np.ndarray:
    """The model's output index of each of the folder's labels; a label the model lacks is an error."""
    missing = sorted(set(data.index_to_label) - set(classifier.labels))
    if missing:
        raise LabelsDifferError(f"the model has no label(s) {', '.join(missing)}; it knows "
                                f"{', '.join(classifier.labels)}")
    return np.array([classifier.labels.index(label) for label in data.index_to_label], dtype=np.int64)


def model_scores(classifier: Classifier, data: DataLoader) -> np.ndarray:
    """The model's scores for every image of `data`: one column per model label, in the model's order."""
    scores = np.empty((data.size, len(classifier.labels)), dtype=np.float32)
    images = data.images(classifier.input_size)
    for row, image in enumerate(tqdm(images, total=data.size, desc="Evaluating .tflite", unit="img",
                                     disable=None, leave=False)):
        scores[row] = classifier.scores(image)
    return scores


def tflite_scores(model_path: str | os.PathLike, data: DataLoader, threads: int | None = None) -> np.ndarray:
    """Scores of a model trained on exactly `data`'s labels, columns in `data.index_to_label` order.

    A model with labels the folder lacks is an error here: dropping their columns would overstate
    accuracy (`trainer evaluate` handles that case over all the model's labels).
    """
    classifier = open_model(model_path, threads=threads)
    columns = folder_label_columns(classifier, data)
    if len(columns) != len(classifier.labels):
        extra = sorted(set(classifier.labels) - set(data.index_to_label))
        raise LabelsDifferError(f"the data has no label(s) {', '.join(extra)} that the model knows")
    return model_scores(classifier, data)[:, columns]

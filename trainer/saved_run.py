"""A run folder: what `trainer train` leaves, and what `trainer export` and `image_classifier.load` read back.

Beside model.tflite and the report, a run keeps the trained Keras model (`model.keras`) and `run.json`:
the labels, the backbone spec (name, input size, normalization) and its version, and the data folder.
That is all a new export needs, so re-quantizing never means training again. Reading `run.json`
needs no TensorFlow, so a folder that is not a run, or a run of another backbone version, is refused
before TensorFlow loads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from device.errors import UserError
from trainer import model_spec as registry, report
from trainer.model_spec import ImageModelSpec, ModelSpec

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
KERAS_FILE = "model.keras"
RUN_FILE = "run.json"
FORMAT = 1
FILES = (MODEL_FILE, LABELS_FILE, KERAS_FILE, RUN_FILE, *report.FILES)  # every file a run folder holds


class RunError(UserError):
    """A folder that is not a usable run."""


@dataclass(frozen=True)
class SavedRun:
    folder: Path
    labels: list[str]
    spec: ModelSpec
    data_folder: Path | None

    @property
    def keras_path(self) -> Path:
        return self.folder / KERAS_FILE


def save(folder: str | os.PathLike, keras_model, labels: Sequence[str], spec: ModelSpec,
         data_folder: str | os.PathLike | None, backbone_trained: bool = False) -> None:
    """Write model.keras and run.json into `folder`, a new export being staged (`export_folder.staged`).

    A trained backbone has no version but its own: it is read back from model.keras, as a user's own is."""
    folder = Path(folder)
    version = None if backbone_trained else spec.backbone_version()
    record = {"format": FORMAT, "labels": list(labels),
              "model_spec": {"name": spec.name, "input_size": list(spec.input_size), "mean": list(spec.mean),
                             "std": list(spec.std), "backbone_version": version},
              "data_folder": None if data_folder is None else os.fspath(Path(data_folder).resolve())}
    keras_model.save(folder / KERAS_FILE)
    (folder / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")


def read(folder: str | os.PathLike) -> SavedRun:
    """The run in `folder`, checked: a run of this format, with its model, on this bloomkit's backbone."""
    folder = Path(folder)
    if not (folder / RUN_FILE).is_file() or not (folder / KERAS_FILE).is_file():
        missing = RUN_FILE if not (folder / RUN_FILE).is_file() else KERAS_FILE
        raise RunError(f"{folder} is not a training run: it has no {missing} "
                       f"(`trainer train --export-dir DIR` keeps one beside model.tflite)")
    try:
        record = json.loads((folder / RUN_FILE).read_text())
        if record.get("format") != FORMAT:
            raise RunError(f"{folder / RUN_FILE} is of format {record.get('format')!r}; this bloomkit reads "
                           f"format {FORMAT}: retrain with `trainer train`")
        spec_record = record["model_spec"]
        labels = [str(label) for label in record["labels"]]
        data_folder = record.get("data_folder")
        spec = _spec(folder, spec_record)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RunError(f"{folder / RUN_FILE} is damaged: retrain with `trainer train`") from None
    return SavedRun(folder, labels, spec, None if data_folder is None else Path(data_folder))


def _spec(folder: Path, record: dict) -> ModelSpec:
    """The spec the run was trained on; a built-in one must be the same backbone version as installed now,
    since the run's head reads that backbone's features."""
    name = record["name"]
    version = record["backbone_version"]
    if version is None:  # a user's own or a trained backbone: it is inside model.keras
        return ImageModelSpec(uri=folder / KERAS_FILE, input_image_shape=record["input_size"], name=name,
                              mean=record["mean"], std=record["std"])
    spec = registry.get(name) if name in registry.names() else None
    if spec is None:
        raise RunError(f"{folder} was trained on the backbone {name!r}, which this bloomkit does not have")
    if spec.backbone_version() != version:
        raise RunError(f"{folder} was trained on another version of {name} ({version}; installed: "
                       f"{spec.backbone_version()}): retrain with `trainer train`")
    return spec


def load_keras(run: SavedRun):
    """The run's Keras model (imports TensorFlow)."""
    import trainer._quiet_tensorflow  # noqa: F401  (before TensorFlow)
    import keras

    from device.errors import one_line

    try:
        return keras.saving.load_model(run.keras_path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged file
        raise RunError(f"cannot load {run.keras_path}: {one_line(error)}") from None

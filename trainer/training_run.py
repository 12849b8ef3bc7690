"""One `trainer train` run: train, export, check the export with the device's engine, write the report
and keep the trained model for later exports (`trainer.saved_run`)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from trainer import image_classifier, quantization as quantizations, report, saved_run
from trainer.data import DataLoader
from trainer.export import ExportFormat
from trainer.frozen_features import FeaturesAhead
from trainer.model_spec import ModelSpec
from trainer.saved_run import LABELS_FILE, MODEL_FILE
from trainer.tflite_eval import tflite_scores


def train_export_evaluate(train_data: DataLoader, test_data: DataLoader, model_spec: ModelSpec | str,
                          recipe: str | None, epochs: int | None, batch_size: int | None, quantization: str, export_dir: str | os.PathLike, seed: int,
                          data_folder: str | os.PathLike, started: float, cache_features: bool = True,
                          features_ahead: FeaturesAhead | None = None,
                          write_to: str | os.PathLike | None = None) -> dict:
    """Run the steps, write model.tflite, labels.txt, the report and the saved run; return the summary.

    The files go to `write_to` (default `export_dir`), the folder being staged to become `export_dir`;
    the summary names them in `export_dir`. `cache_features=False` is Model Maker's recipe (the frozen
    backbone re-runs every epoch), for comparisons.
    """
    timings = {}
    clock = time.perf_counter()
    model = image_classifier.create(train_data, model_spec=model_spec, epochs=epochs, batch_size=batch_size,
                                    seed=seed, cache_features=cache_features, features_ahead=features_ahead,
                                    recipe=recipe)
    timings["train"] = time.perf_counter() - clock
    clock = time.perf_counter()
    export_dir = Path(export_dir)
    folder = Path(write_to or export_dir)
    model.export(folder, tflite_filename=MODEL_FILE, label_filename=LABELS_FILE,
                 export_format=[ExportFormat.TFLITE, ExportFormat.LABEL],
                 quantization_config=quantizations.by_name(quantization, train_data))
    saved_run.save(folder, model.model, model.index_to_label, model.model_spec, data_folder,
                   backbone_trained=model.hparams.train_whole_model)
    timings["export"] = time.perf_counter() - clock
    clock = time.perf_counter()
    float_counts = _confusion(test_data, model.predict_scores(test_data))
    exported_scores = tflite_scores(folder / MODEL_FILE, test_data)
    tflite_counts = _confusion(test_data, exported_scores)
    timings["evaluate"] = time.perf_counter() - clock
    timings.update(model.timings)
    labels = train_data.index_to_label
    summary = {
        "labels": labels,
        "data_folder": os.fspath(data_folder),
        "train_count": train_data.size,
        "test_count": test_data.size,
        "skipped": [{"path": path, "reason": reason} for path, reason in train_data.skipped],
        "model_spec": model.model_spec.name,
        "recipe": model.recipe,
        "epochs": model.hparams.epochs,
        "batch_size": model.hparams.batch_size,
        "training": model.training_log,
        "seed": seed,
        "quantization": quantization,
        "float_accuracy": report.accuracy(float_counts),
        "tflite_accuracy": report.accuracy(tflite_counts),
        "per_label": {"float": report.per_label(float_counts, labels),
                      "tflite": report.per_label(tflite_counts, labels)},
        "confusion_matrix": tflite_counts.tolist(),
        "model_path": os.fspath(export_dir / MODEL_FILE),
        "model_bytes": (folder / MODEL_FILE).stat().st_size,
        "report_path": os.fspath(export_dir / report.REPORT_FILE),
        **model.feature_counts,
    }
    summary["timings"] = {name: round(value, 2) for name, value in timings.items()}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    report.write_report(folder, summary, labels, tflite_counts, model.history.history,
                        best_epoch=model.training_log["best_epoch"], misclassified=_misclassified(test_data, exported_scores))
    return summary


def _confusion(data: DataLoader, scores: np.ndarray) -> np.ndarray:
    return report.confusion_matrix(data.labels, scores.argmax(axis=1), data.num_classes)


def _misclassified(data: DataLoader, scores: np.ndarray) -> list[tuple[str, str, str, float]]:
    """(path, true label, predicted label, score) of each photo the exported model got wrong, the most
    confident mistakes first: those are the ones worth a look (a mislabelled photo, a confusing class)."""
    predicted, truth = scores.argmax(axis=1), data.labels
    wrong = np.flatnonzero(predicted != truth)
    wrong = wrong[np.argsort(-scores[wrong, predicted[wrong]], kind="stable")]
    names = data.index_to_label
    return [(data.items[i][0], names[truth[i]], names[predicted[i]], float(scores[i, predicted[i]])) for i in wrong]

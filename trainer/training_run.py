"""One `trainer train` run: train, export, check the export with the device's engine, write the report."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from trainer import image_classifier, report
from trainer.data import DataLoader
from trainer.export import ExportFormat
from trainer.quantization import QuantizationConfig
from trainer.tflite_eval import tflite_scores

TFLITE_FILE = "model.tflite"


def quantization_config(name: str, train_data: DataLoader) -> QuantizationConfig | None:
    """The `--quantization` choices: int8 (Model Maker's default), float16, dynamic, float32."""
    return {"int8": lambda: QuantizationConfig.for_int8(train_data),
            "float16": QuantizationConfig.for_float16,
            "dynamic": QuantizationConfig.for_dynamic,
            "float32": lambda: None}[name]()


def train_export_evaluate(train_data: DataLoader, test_data: DataLoader, model_spec: str, epochs: int,
                          batch_size: int, quantization: str, export_dir: str | os.PathLike, seed: int,
                          data_folder: str | os.PathLike, started: float, cache_features: bool = True) -> dict:
    """Run the steps, write model.tflite, labels.txt and the report to `export_dir`; return the summary.

    `cache_features=False` is Model Maker's recipe (the frozen backbone re-runs every epoch), for comparisons.
    """
    timings = {}
    clock = time.perf_counter()
    model = image_classifier.create(train_data, model_spec=model_spec, epochs=epochs, batch_size=batch_size,
                                    seed=seed, cache_features=cache_features)
    timings["train"] = time.perf_counter() - clock
    clock = time.perf_counter()
    export_dir = Path(export_dir)
    model.export(export_dir, tflite_filename=TFLITE_FILE, export_format=[ExportFormat.TFLITE, ExportFormat.LABEL],
                 quantization_config=quantization_config(quantization, train_data))
    timings["export"] = time.perf_counter() - clock
    clock = time.perf_counter()
    float_counts = _confusion(test_data, model.predict_scores(test_data))
    model_path = export_dir / TFLITE_FILE
    tflite_counts = _confusion(test_data, tflite_scores(model_path, test_data))
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
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "quantization": quantization,
        "float_accuracy": report.accuracy(float_counts),
        "tflite_accuracy": report.accuracy(tflite_counts),
        "per_label": {"float": report.per_label(float_counts, labels),
                      "tflite": report.per_label(tflite_counts, labels)},
        "confusion_matrix": tflite_counts.tolist(),
        "model_path": os.fspath(model_path),
        "model_bytes": model_path.stat().st_size,
        "report_path": os.fspath(export_dir / report.REPORT_FILE),
    }
    summary["timings"] = {name: round(value, 2) for name, value in timings.items()}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    report.write_report(export_dir, summary, labels, tflite_counts, model.history.history)
    return summary


def _confusion(data: DataLoader, scores: np.ndarray) -> np.ndarray:
    return report.confusion_matrix(data.labels, scores.argmax(axis=1), data.num_classes)

"""`trainer evaluate MODEL.tflite --data DIR`: accuracy of an exported model on labelled photos.

Runs the model with the device's own engine, so it needs no TensorFlow.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="accuracy of a .tflite model on a labelled folder",
        description="Classify every photo of DIR (one sub-folder per label) with MODEL.tflite through the "
                    "device's interpreter and report accuracy and per-label precision and recall.")
    parser.add_argument("model", type=Path, metavar="MODEL.tflite")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="one sub-folder of photos per label")
    parser.add_argument("--labels", type=Path, metavar="labels.txt", help="labels, for a model without metadata")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from trainer import report
    from trainer.data import load_folder
    from trainer.tflite_eval import folder_label_columns, model_scores, open_model

    started = time.perf_counter()
    classifier = open_model(args.model, args.labels)
    data = load_folder(args.data)
    truth = folder_label_columns(classifier, data)[data.labels]
    predicted = model_scores(classifier, data).argmax(axis=1)  # over all the model's labels, as the device
    labels = list(classifier.labels)
    counts = report.confusion_matrix(truth, predicted, len(labels))
    result = {
        "model_path": os.fspath(args.model),
        "labels": labels,
        "count": data.size,
        "skipped": [{"path": path, "reason": reason} for path, reason in data.skipped],
        "accuracy": report.accuracy(counts),
        "per_label": report.per_label(counts, labels),
        "confusion_matrix": counts.tolist(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy {result['accuracy']:.3f} on {data.size} photos ({len(data.skipped)} skipped)")
        for label in data.index_to_label:
            scores = result["per_label"][label]
            print(f"  {label}: precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
                  f"{scores['support']} photos")
    return 0

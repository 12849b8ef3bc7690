"""How many photos int8 calibration needs: the same trained model exported with several step counts.

For each split seed, trains once (the default recipe), then exports full-integer int8 models calibrated
on N training photos for each N and scores them with the device's engine: test accuracy, accuracy on
every photo of the folder, and top-1 agreement with the float model on every photo. Export time is per
model. Results: docs/benchmarks-trainer.md (why the default is `DEFAULT_QUANTIZATION_STEPS`).

    .venv/bin/python benchmarks/calibration_steps.py [--data DIR] [--steps 25 50 100 200] [--seeds 0 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flowers-mini"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--split", type=float, default=0.8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from trainer import DataLoader, QuantizationConfig, image_classifier
    from trainer.tflite_eval import tflite_scores

    data = DataLoader.from_folder(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        model_path = Path(scratch) / "model.tflite"
        for seed in args.seeds:
            train, test = data.split(args.split, seed=seed)
            classifier = image_classifier.create(train, seed=seed)
            float_test = classifier.predict_scores(test).argmax(axis=1)
            float_all = classifier.predict_scores(data).argmax(axis=1)
            for steps in args.steps:
                started = time.perf_counter()
                model_path.write_bytes(classifier.tflite_model(QuantizationConfig.for_int8(train, steps)))
                export_seconds = time.perf_counter() - started
                int8_test = tflite_scores(model_path, test).argmax(axis=1)
                int8_all = tflite_scores(model_path, data).argmax(axis=1)
                rows.append({
                    "seed": seed, "steps": steps, "export_seconds": round(export_seconds, 1),
                    "float_test_accuracy": round(float(np.mean(float_test == test.labels)), 3),
                    "int8_test_accuracy": round(float(np.mean(int8_test == test.labels)), 3),
                    "float_all_accuracy": round(float(np.mean(float_all == data.labels)), 3),
                    "int8_all_accuracy": round(float(np.mean(int8_all == data.labels)), 3),
                    "agreement_all": round(float(np.mean(int8_all == float_all)), 3),
                })
                if not args.json:
                    print("  ".join(f"{key} {value}" for key, value in rows[-1].items()), flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training speed: the cached-features fast path against re-running the frozen backbone every epoch.

Both recipes train the same EfficientNet-Lite0 classifier (same epochs, batch, seed, stratified 80/20
split of flowers-mini); the baseline is Model Maker's way. Each runs in its own process so that peak
memory is its own. The fast run also exports the default int8 model and scores it with the device's
engine. Prints a table, or one JSON object with --json.

    .venv/bin/python benchmarks/train_speed.py [--data DIR] [--epochs 5] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flowers-mini"


def run_recipe(recipe: str, data_dir: Path, epochs: int, batch_size: int, seed: int) -> dict:
    """Train with one recipe in this process; the fast one also exports and checks the int8 model."""
    from trainer import DataLoader, image_classifier

    train_data, test_data = DataLoader.from_folder(data_dir).split(0.8, seed=seed)
    started = time.perf_counter()
    model = image_classifier.create(train_data, epochs=epochs, batch_size=batch_size, seed=seed,
                                    cache_features=recipe == "fast")
    result = {"recipe": recipe, "train_seconds": round(time.perf_counter() - started, 1),
              **{name: round(value, 1) for name, value in model.timings.items()},
              "train_count": train_data.size, "test_count": test_data.size,
              "float_accuracy": round(float(model.evaluate(test_data)[1]), 4)}
    if recipe == "fast":
        with tempfile.TemporaryDirectory() as export_dir:
            started = time.perf_counter()
            model.export(export_dir)
            result["export_seconds"] = round(time.perf_counter() - started, 1)
            model_path = Path(export_dir) / "model.tflite"
            result["int8_bytes"] = model_path.stat().st_size
            result["int8_accuracy"] = round(model.evaluate_tflite(model_path, test_data)["accuracy"], 4)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--recipe", choices=("fast", "baseline"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.recipe:
        print(json.dumps(run_recipe(args.recipe, args.data, args.epochs, args.batch_size, args.seed)))
        return 0

    results = {}
    for recipe in ("fast", "baseline"):
        child = subprocess.run(
            [sys.executable, __file__, "--recipe", recipe, "--data", str(args.data), "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--seed", str(args.seed)],
            capture_output=True, text=True, cwd=REPO, check=True)
        results[recipe] = json.loads(child.stdout.splitlines()[-1])
    fast, baseline = results["fast"], results["baseline"]
    summary = {
        **results,
        "speed_ratio": round(fast["train_seconds"] / baseline["train_seconds"], 3),
        "checks": {
            "fast_at_most_a_third_of_baseline": fast["train_seconds"] <= baseline["train_seconds"] / 3,
            "float_accuracy_at_least_0.88": fast["float_accuracy"] >= 0.88,
            "int8_within_2_points_of_float": abs(fast["int8_accuracy"] - fast["float_accuracy"]) <= 0.02,
        },
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"flowers-mini: {fast['train_count']} train / {fast['test_count']} test photos, "
              f"{args.epochs} epochs, batch {args.batch_size}, EfficientNet-Lite0 frozen")
        print(f"{'recipe':<10}{'train s':>9}{'features s':>12}{'fit s':>8}{'float acc':>11}{'peak RSS MB':>13}")
        for recipe in ("fast", "baseline"):
            r = results[recipe]
            print(f"{recipe:<10}{r['train_seconds']:>9.1f}{r['features_seconds']:>12.1f}{r['fit_seconds']:>8.1f}"
                  f"{r['float_accuracy']:>11.3f}{r['peak_rss_mb']:>13}")
        print(f"fast / baseline = {summary['speed_ratio']:.3f}")
        print(f"int8 export: {fast['int8_accuracy']:.3f} accuracy, {fast['int8_bytes'] / 1e6:.2f} MB, "
              f"{fast['export_seconds']:.0f} s")
        for check, passed in summary["checks"].items():
            print(f"{'PASS' if passed else 'FAIL'}  {check}")
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Training speed: a whole `trainer train` with the cached-features fast path against Model Maker's recipe.

Every run is the real command, `trainer train --split 0.8` on flowers-mini (data check, training, int8
export, evaluation of the .tflite with the device's engine, report), in its own process, timed from
process start to exit. The recipes differ only in training: the baseline re-runs the frozen backbone
every epoch, as Model Maker did (`--rerun-backbone`), with the same backbone, epochs, batch, seed and
export settings. `--rounds` runs of each, in alternating order; the median runs are compared. Prints a
table with each stage's seconds, or one JSON object with --json.

    .venv/bin/python benchmarks/train_speed.py [--data DIR] [--epochs 5] [--batch-size 32] [--rounds 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flowers-mini"
RECIPES = ("fast", "baseline")
STAGES = ("startup", "build", "features", "fit", "export", "evaluate", "other")


def run_recipe(recipe: str, cli_args: list[str]) -> dict:
    """`trainer train` in this process; the baseline recipe is Model Maker's way of training."""
    from trainer import cli

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exit_code = cli.main(["train", *cli_args, "--json", *(["--rerun-backbone"] if recipe == "baseline" else [])])
    if exit_code:
        raise SystemExit(exit_code)
    summary = json.loads(output.getvalue().splitlines()[-1])
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return summary


def stages(summary: dict, wall_seconds: float) -> dict[str, float]:
    """Seconds per stage: startup (Python, imports), model build, feature extraction, fit, int8 export,
    evaluation (float model and .tflite on the test photos), other (data check, importing TensorFlow,
    report). The fast path's features start before TensorFlow loads, so `features` is what was left
    to wait for once it had."""
    t = summary["timings"]
    return {"startup": wall_seconds - summary["seconds"],
            "build": t["train"] - t["features_seconds"] - t["fit_seconds"],
            "features": t["features_seconds"], "fit": t["fit_seconds"], "export": t["export"],
            "evaluate": t["evaluate"], "other": summary["seconds"] - t["train"] - t["export"] - t["evaluate"]}


def run_child(recipe: str, options: list[str]) -> dict:
    """One whole `trainer train` of `recipe` in its own process, timed from process start to exit."""
    with tempfile.TemporaryDirectory() as export_dir:
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--recipe", recipe, "--export-dir", export_dir,
                                *options], capture_output=True, text=True, cwd=REPO)
        wall_seconds = time.perf_counter() - started
    if child.returncode:
        sys.exit(f"the {recipe} run failed:\n{child.stderr}")
    summary = json.loads(child.stdout.splitlines()[-1])
    return {"seconds": round(wall_seconds, 1),
            "stages": {k: round(v, 1) for k, v in stages(summary, wall_seconds).items()},
            **{k: summary[k] for k in ("train_count", "test_count", "float_accuracy", "tflite_accuracy",
                                       "model_bytes", "peak_rss_mb")}}


def median_run(recipe_runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one of an even count), and every run's time."""
    ordered = sorted(recipe_runs, key=lambda run: run["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "all_seconds": [run["seconds"] for run in recipe_runs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each recipe, alternating (default 2)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--recipe", choices=RECIPES, help=argparse.SUPPRESS)  # in the child process
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)  # in the child process
    args = parser.parse_args()
    options = ["--data", str(args.data), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--seed", str(args.seed)]
    if args.recipe:
        print(json.dumps(run_recipe(args.recipe, [*options, "--split", "0.8", "--export-dir", args.export_dir])))
        return 0

    # Warm the caches (converted weights, the backbone's .tflite) as every run after a machine's first finds them.
    subprocess.run([sys.executable, "-c", "from trainer import frozen_features, model_spec\n"
                    "spec = model_spec.get('efficientnet_lite0')\n"
                    "spec.imagenet_weights(); frozen_features.extractor_tflite(spec)"], check=True, cwd=REPO)
    runs = {recipe: [] for recipe in RECIPES}
    for round_index in range(args.rounds):
        # alternate the order, so a load that rises or falls during a round weighs on both recipes
        for recipe in RECIPES[::-1] if round_index % 2 else RECIPES:
            runs[recipe].append(run_child(recipe, options))
    results = {recipe: median_run(recipe_runs) for recipe, recipe_runs in runs.items()}
    fast, baseline = results["fast"], results["baseline"]
    summary = {
        **results,
        "speed_ratio": round(fast["seconds"] / baseline["seconds"], 3),
        "checks": {
            "whole_run_fast_at_most_a_third_of_baseline": fast["seconds"] <= baseline["seconds"] / 3,
            "float_accuracy_at_least_0.88": fast["float_accuracy"] >= 0.88,
            "int8_within_2_points_of_float": all(abs(r["tflite_accuracy"] - r["float_accuracy"]) <= 0.02
                                                 for r in results.values()),
        },
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"flowers-mini: {fast['train_count']} train / {fast['test_count']} test photos, "
              f"{args.epochs} epochs, batch {args.batch_size}, EfficientNet-Lite0 frozen, int8 export; "
              "whole `trainer train` runs, seconds")
        print(f"{'recipe':<10}{'total':>7}" + "".join(f"{stage:>10}" for stage in STAGES)
              + f"{'float acc':>11}{'int8 acc':>10}{'peak RSS MB':>13}")
        for recipe in RECIPES:
            r = results[recipe]
            print(f"{recipe:<10}{r['seconds']:>7.1f}" + "".join(f"{r['stages'][s]:>10.1f}" for s in STAGES)
                  + f"{r['float_accuracy']:>11.3f}{r['tflite_accuracy']:>10.3f}{r['peak_rss_mb']:>13}")
        for recipe in RECIPES:
            print(f"{recipe} runs: {', '.join(f'{t:.1f}' for t in results[recipe]['all_seconds'])} s (median shown)")
        print(f"fast / baseline = {summary['speed_ratio']:.3f} (whole runs, medians)")
        for check, passed in summary["checks"].items():
            print(f"{'PASS' if passed else 'FAIL'}  {check}")
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

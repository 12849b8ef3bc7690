"""Training at scale: whole `trainer train` runs on 500, 5,000 and 50,000 photos, with wall time, features/s and
peak RSS of each, and what computing features on every core buys.

The bigger sets are flowers-mini made 10 and 100 times bigger by `testkit.photo_variants` (crops, mirror
images and rescalings of each photo, written as new JPEGs). They are kept under `--work` between runs of
this script (50,000 JPEGs are 1.3 GB) and deleted at its end unless `--keep`. Each run is the real command
in its own process with a cold feature cache (the converted backbone linked in, as after any first run),
so every photo is decoded and goes through the backbone. Peak RSS is the process's own high-water mark
or, if larger, the sampled sum over its process tree. Target: under 1.5 GB at 50,000 photos, and time
per photo about flat across sizes.

`--cores` first times the backbone pass alone over flowers-mini with the interpreter on 1 thread or on
every core, and photos decoded by 1 thread or by one a core (rounds alternate the order).

    .venv/bin/python benchmarks/train_scale.py [--sizes 500,5000,50000] [--cores] [--work DIR] [--keep] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.photo_variants import variant_folder  # noqa: E402
from testkit.trainer_runs import cold_feature_cache, train_measured  # noqa: E402

FLOWERS = REPO.parent / "shared" / "data" / "flowers-mini"
PEAK_RSS_LIMIT_MB = 1536
CORE_ROUNDS = 3


def run_size(flowers: Path, work: Path, photos: int) -> dict:
    """One cold `trainer train` on `photos` photos made from `flowers`."""
    originals = sum(1 for _ in flowers.glob("*/*.jpg"))
    variants = max(1, round(photos / originals))
    data = flowers if variants == 1 else variant_folder(flowers, work / f"photos-x{variants}", variants)
    with tempfile.TemporaryDirectory(dir=work, prefix="run-") as scratch:
        run = train_measured(data, Path(scratch) / "export", cold_feature_cache(Path(scratch)))
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    summary = json.loads(run.stdout)
    timings = summary["timings"]
    total = summary["train_count"] + summary["test_count"]
    return {"photos": total, "wall_s": round(run.seconds, 1), "peak_rss_mb": run.peak_rss_mb,
            "feature_pass_s": summary["feature_pass_seconds"],
            "features_per_s": round(summary["features_computed"] / summary["feature_pass_seconds"], 1),
            "fit_s": timings["fit_seconds"], "export_s": timings["export"], "evaluate_s": timings["evaluate"],
            "ms_per_photo": round(1000 * run.seconds / total, 2), "tflite_accuracy": summary["tflite_accuracy"]}


def core_rates(flowers: Path) -> dict:
    """Features/s of the backbone pass over `flowers` for each (interpreter threads, decoding threads)."""
    from device.runtime import default_threads, load_interpreter
    from trainer import frozen_features, model_spec
    from trainer.data import DataLoader

    spec = model_spec.get("efficientnet_lite0")
    model = frozen_features.extractor_tflite(spec)
    data = DataLoader.from_folder(flowers)
    cores = default_threads()
    settings = [(1, 1), (cores, 1), (1, cores), (cores, cores)]
    rates: dict[str, list[float]] = {f"{threads}x{decoders}": [] for threads, decoders in settings}
    for number in range(CORE_ROUNDS):
        for threads, decoders in (settings if number % 2 == 0 else settings[::-1]):
            interpreter = load_interpreter(model, threads=threads)
            began = time.perf_counter()
            count = sum(1 for _ in frozen_features.feature_rows(interpreter, spec, data, decoders=decoders))
            rates[f"{threads}x{decoders}"].append(count / (time.perf_counter() - began))
    return {"cores": cores, "photos": data.size,
            "features_per_s": {name: round(statistics.median(values), 1) for name, values in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FLOWERS, help="the photos to grow from (default flowers-mini)")
    parser.add_argument("--sizes", default="500,5000,50000", help="photos per run, multiples of the data's")
    parser.add_argument("--cores", action="store_true", help="also time the backbone pass on 1 core and on all")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bloomkit-train-scale",
                        help="where the made photo sets are kept while this runs")
    parser.add_argument("--keep", action="store_true", help="keep the made photo sets for the next run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    result: dict = {"load_average_at_start": [round(value, 2) for value in load]}
    try:
        if args.cores:
            result["core_rates"] = core_rates(args.data)
        result["runs"] = [run_size(args.data, args.work, int(size)) for size in args.sizes.split(",")]
    finally:
        if not args.keep:
            for made in args.work.glob("photos-x*"):
                shutil.rmtree(made)
    result["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    largest = max(result["runs"], key=lambda run: run["photos"])
    result["peak_rss_within_limit"] = largest["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    raise SystemExit(0 if result["peak_rss_within_limit"] else 1)


def print_table(result: dict) -> None:
    if "core_rates" in result:
        rates = result["core_rates"]
        print(f"backbone pass over {rates['photos']} photos, features/s (interpreter threads x decoding threads, "
              f"median of {CORE_ROUNDS}):")
        print("  " + ", ".join(f"{name}: {rate}" for name, rate in rates["features_per_s"].items()))
    columns = ("photos", "wall_s", "ms_per_photo", "feature_pass_s", "features_per_s", "fit_s", "export_s",
               "evaluate_s", "peak_rss_mb", "tflite_accuracy")
    print("".join(f"{name:>16}" for name in columns))
    for run in result["runs"]:
        print("".join(f"{run[name]:>16}" for name in columns))
    print(f"load average {result['load_average_at_start']} at start, {result['load_average_at_end']} at end")
    print(("PASS" if result["peak_rss_within_limit"] else "FAIL")
          + f"  peak RSS of the largest run under {PEAK_RSS_LIMIT_MB} MB")


if __name__ == "__main__":
    main()

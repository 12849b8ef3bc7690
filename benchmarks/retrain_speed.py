"""Retraining after adding photos: `trainer train` with the feature cache holding the old photos' features,
against a cold-cache `trainer train` of the same, whole set.

Each round uses a fresh $BLOOMKIT_CACHE (the converted backbones linked in, as after any first run, so
only the feature cache is cold). Cold: train on every photo. Retrain: train on 90% of each label's
photos (not timed), add the other 10%, train again (timed); its --json must say that only the added
photos' features were computed. Rounds alternate the order of the two. Wall time is noisy on a shared
machine; CPU time (user + system of the run) is reported beside it. Target: retrain <= 0.6 x cold.

Most of a run on a few hundred photos is fixed cost (importing TensorFlow, the int8 conversion), so the
saving grows with the set: `--variants N` makes each photo N photos (it, and crops, mirror images and
rescalings of it written as new JPEGs: `testkit.photo_variants`), for a set the size of a real deployment's.

    .venv/bin/python benchmarks/retrain_speed.py [--rounds 3] [--data DIR] [--variants 1] [--epochs 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.photo_variants import variant_folder  # noqa: E402
from testkit.trainer_runs import cold_feature_cache, train_measured  # noqa: E402

FLOWERS = REPO.parent / "shared" / "data" / "flowers-mini"
TARGET = 0.6


def train(data: Path, cache: Path, export: Path, epochs: int) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds, the --json summary) of one `trainer train`."""
    run = train_measured(data, export, cache, "--epochs", str(epochs))
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    return run.seconds, run.cpu_seconds, json.loads(run.stdout)


def split_folder(data: Path, base: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """A copy of 90% of each label's photos, and (photo, where it goes) for the other 10%."""
    folder = base / "photos"
    added = []
    for label in sorted(p for p in data.iterdir() if p.is_dir()):
        photos = sorted(label.glob("*.jpg"))
        keep = round(len(photos) * 0.9)
        (folder / label.name).mkdir(parents=True)
        for photo in photos[:keep]:
            shutil.copy(photo, folder / label.name / photo.name)
        added += [(photo, folder / label.name / photo.name) for photo in photos[keep:]]
    return folder, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FLOWERS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", type=int, default=1, help="photos made from each photo (default 1: as is)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bloomkit-retrain-bench-") as scratch:
        base = Path(scratch)
        if args.variants > 1:
            args.data = variant_folder(args.data, base / f"photos-x{args.variants}", args.variants)
        total = sum(1 for _ in args.data.glob("*/*.jpg"))
        train(args.data, cold_feature_cache(base), base / "export", 1)  # warm the OS file cache and the backbone
        for number in range(args.rounds):
            result = {}
            for kind in (("cold", "retrain") if number % 2 == 0 else ("retrain", "cold")):
                if kind == "cold":
                    result["cold"] = train(args.data, cold_feature_cache(base), base / "export", args.epochs)
                else:
                    cache = cold_feature_cache(base)
                    folder, added = split_folder(args.data, base / f"round-{number}")
                    train(folder, cache, base / "export", args.epochs)
                    for photo, target in added:
                        shutil.copy(photo, target)
                    result["retrain"] = train(folder, cache, base / "export", args.epochs)
                    result["added"] = len(added)
            cold, retrain = result["cold"], result["retrain"]
            rows.append({"cold_s": round(cold[0], 1), "retrain_s": round(retrain[0], 1),
                         "cold_cpu_s": round(cold[1], 1), "retrain_cpu_s": round(retrain[1], 1),
                         "wall_ratio": round(retrain[0] / cold[0], 3), "cpu_ratio": round(retrain[1] / cold[1], 3),
                         "added": result["added"], "features_computed": retrain[2]["features_computed"],
                         "features_cached": retrain[2]["features_cached"],
                         "cold_timings": cold[2]["timings"], "retrain_timings": retrain[2]["timings"]})
    summary = {"photos": total, "rounds": rows,
               "wall_ratio": statistics.median(r["wall_ratio"] for r in rows),
               "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
               "only_new_computed": all(r["features_computed"] == r["added"] for r in rows)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{total} photos, {args.epochs} epochs; retrain after adding {rows[0]['added']} (10%) against cold")
        for r in rows:
            print(f"  cold {r['cold_s']} s ({r['cold_cpu_s']} s CPU), retrain {r['retrain_s']} s "
                  f"({r['retrain_cpu_s']} s CPU): wall {r['wall_ratio']:.3f}, CPU {r['cpu_ratio']:.3f}; features computed "
                  f"{r['features_computed']}, cached {r['features_cached']}")
        print(f"median: wall {summary['wall_ratio']:.3f}, CPU {summary['cpu_ratio']:.3f} (target <= {TARGET}); "
              f"only the new photos computed: {summary['only_new_computed']}")
    raise SystemExit(0 if summary["wall_ratio"] <= TARGET and summary["only_new_computed"] else 1)


if __name__ == "__main__":
    main()

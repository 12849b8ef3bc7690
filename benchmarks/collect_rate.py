"""Does keeping samples slow inference? The daemon's live rate with `--collect-random 0.2` against the same run
without collection, measured side by side.

Two daemons replay the same folder at fps 0 (frames always waiting) with the same model and threads: one
collects a fifth of its frames (full-size JPEGs, written by the worker thread), one does not. They run in
alternating rounds, the other paused (SIGSTOP), so both see the same machine; the median of the rounds'
ratios is the verdict (target >= 0.90). Samples go to a temporary folder with a budget large enough that
nothing is evicted during the run.

    .venv/bin/python benchmarks/collect_rate.py [--threads 1] [--rounds 6] [--seconds 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from daemon_process import FLOWERS, REFERENCE_MODEL, Daemon

TARGET = 0.90


def rate(daemon: Daemon, seconds: float) -> float:
    first, began = daemon.metrics(), time.monotonic()
    time.sleep(seconds)
    last = daemon.metrics()
    return (last["bloomkit_inferences_total"] - first["bloomkit_inferences_total"]) / (time.monotonic() - began)


def measure(model: Path, images: Path, threads: int, rounds: int, seconds: float, share: float) -> dict:
    common = ("--model", str(model), "--source", f"folder:{images}", "--threads", str(threads))
    with tempfile.TemporaryDirectory(prefix="bloomkit-collect-bench-") as folder:
        off = Daemon(*common)
        on = Daemon(*common, "--collect", folder, "--collect-random", f"{share:g}", "--collect-budget-mb", "5000")
        try:
            for daemon in (off, on):
                daemon.wait_for_count("bloomkit_inferences_total", 50, timeout=180)  # warmed up, folder decoded
            rates = {"off": [], "on": []}
            for number in range(rounds):
                order = [("off", off, on), ("on", on, off)]
                for name, running, paused in order if number % 2 == 0 else order[::-1]:
                    paused.pause()
                    running.resume()
                    time.sleep(0.5)
                    rates[name].append(rate(running, seconds))
                off.resume()
                on.resume()
            collected = {key: value for key, value in on.metrics().items() if key.startswith("bloomkit_samples")}
        finally:
            for daemon in (off, on):
                daemon.resume()
                daemon.stop()
    ratios = [with_collection / without for with_collection, without in zip(rates["on"], rates["off"])]
    return {"threads": threads, "collect_random": share, "off_per_s": round(statistics.median(rates["off"]), 1),
            "on_per_s": round(statistics.median(rates["on"]), 1), "ratio": round(statistics.median(ratios), 3),
            "round_ratios": [round(r, 3) for r in ratios],
            "kept": int(sum(v for k, v in collected.items() if k.startswith("bloomkit_samples_kept_total"))),
            "dropped": int(sum(v for k, v in collected.items() if k.startswith("bloomkit_samples_dropped_total"))),
            "bytes": int(collected.get("bloomkit_samples_bytes", 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    parser.add_argument("--images", type=Path, default=FLOWERS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--share", type=float, default=0.2, help="--collect-random (default 0.2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(args.model, args.images, threads, args.rounds, args.seconds, args.share) for threads in args.threads]
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"model {args.model.name}, folder {args.images} at fps 0, --collect-random {args.share:g}, "
              f"{args.rounds} alternating rounds of {args.seconds:g} s (medians)")
        for row in rows:
            verdict = "ok" if row["ratio"] >= TARGET else "BELOW TARGET"
            print(f"threads {row['threads']}: off {row['off_per_s']}/s, on {row['on_per_s']}/s, ratio {row['ratio']:.3f} "
                  f"(target >= {TARGET}) {verdict}; rounds {row['round_ratios']}; kept {row['kept']} samples "
                  f"({row['bytes'] / 1e6:.1f} MB), dropped {row['dropped']}")
    raise SystemExit(0 if all(row["ratio"] >= TARGET for row in rows) else 1)


if __name__ == "__main__":
    main()

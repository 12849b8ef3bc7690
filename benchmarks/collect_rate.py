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
import os
import statistics
import tempfile
import time
from pathlib import Path

from daemon_process import FLOWERS, REFERENCE_MODEL, Daemon

TARGET = 0.90


def cpu_seconds(daemon: Daemon) -> float:
    """The daemon's user + system CPU time so far, every thread (the collection worker's included)."""
    fields = Path(f"/proc/{daemon.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(daemon: Daemon, seconds: float) -> tuple[float, float]:
    """(inferences per second, CPU seconds per inference)."""
    first, cpu, began = daemon.metrics(), cpu_seconds(daemon), time.monotonic()
    time.sleep(seconds)
    last = daemon.metrics()
    count = last["bloomkit_inferences_total"] - first["bloomkit_inferences_total"]
    return count / (time.monotonic() - began), (cpu_seconds(daemon) - cpu) / max(count, 1)


def measure(model: Path, images: Path, threads: int, rounds: int, seconds: float, share: float) -> dict:
    common = ("--model", str(model), "--source", f"folder:{images}", "--threads", str(threads))
    with tempfile.TemporaryDirectory(prefix="bloomkit-collect-bench-") as folder:
        off = Daemon(*common)
        on = Daemon(*common, "--collect", folder, "--collect-random", f"{share:g}", "--collect-budget-mb", "5000")
        try:
            for daemon in (off, on):
                daemon.wait_for_count("bloomkit_inferences_total", 50, timeout=180)  # warmed up, folder decoded
            rates: dict[str, list[float]] = {"off": [], "on": []}
            costs: dict[str, list[float]] = {"off": [], "on": []}
            for number in range(rounds):
                order = [("off", off, on), ("on", on, off)]
                for name, running, paused in order if number % 2 == 0 else order[::-1]:
                    paused.pause()
                    running.resume()
                    time.sleep(0.5)
                    per_second, per_frame = rate(running, seconds)
                    rates[name].append(per_second)
                    costs[name].append(per_frame)
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
            "cpu_ms_per_frame_off": round(1000 * statistics.median(costs["off"]), 2),
            "cpu_ms_per_frame_on": round(1000 * statistics.median(costs["on"]), 2),
            # With every core busy, the rate falls as the CPU per frame grows: the verdict load does not move.
            "cpu_bound_ratio": round(statistics.median(costs["off"]) / statistics.median(costs["on"]), 3),
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
    rows = [measure(args.model, args.images, threads, args.rounds, args.seconds, args.share)
            for threads in args.threads]
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"model {args.model.name}, folder {args.images} at fps 0, --collect-random {args.share:g}, "
              f"{args.rounds} alternating rounds of {args.seconds:g} s (medians)")
        for row in rows:
            verdict = "ok" if row["ratio"] >= TARGET else "BELOW TARGET"
            print(f"threads {row['threads']}: off {row['off_per_s']}/s, on {row['on_per_s']}/s, "
                  f"ratio {row['ratio']:.3f} (target >= {TARGET}) {verdict}; rounds {row['round_ratios']}")
            print(f"  CPU per frame {row['cpu_ms_per_frame_off']} ms off, {row['cpu_ms_per_frame_on']} ms on: "
                  f"ratio with every core busy {row['cpu_bound_ratio']:.3f}; kept {row['kept']} samples "
                  f"({row['bytes'] / 1e6:.1f} MB), dropped {row['dropped']}; load average {os.getloadavg()[0]:.1f}")
    raise SystemExit(0 if all(row["ratio"] >= TARGET for row in rows) else 1)


if __name__ == "__main__":
    main()

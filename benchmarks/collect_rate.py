"""Does keeping samples slow inference? The daemon's live rate with `--collect-random 0.2` against the same run
without collection, measured side by side.

Two daemons replay the same folder at fps 0 (frames always waiting) with the same model and threads: one
collects a fifth of its frames (full-size JPEGs, written by the worker thread), one does not. They run in
alternating rounds, the other paused (SIGSTOP), so both see the same machine; the median of the rounds'
ratios is the verdict (target >= 0.90). Samples go to a temporary folder with a budget large enough that
nothing is evicted during the run. `--baseline DIR` adds a third daemon, collecting the same way with the
`device` code of another checkout (`git archive COMMIT | tar -x -C DIR`), to weigh a change to collection
in the same rounds.

    .venv/bin/python benchmarks/collect_rate.py [--threads 1] [--rounds 6] [--seconds 5] [--baseline DIR] [--json]
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


def rate(daemon: Daemon, seconds: float) -> tuple[float, float, float]:
    """(inferences per second, CPU seconds per inference, samples kept per inference)."""
    first, cpu, began = daemon.metrics(), cpu_seconds(daemon), time.monotonic()
    time.sleep(seconds)
    last = daemon.metrics()
    count = last["bloomkit_inferences_total"] - first["bloomkit_inferences_total"]
    kept = kept_total(last) - kept_total(first)
    return count / (time.monotonic() - began), (cpu_seconds(daemon) - cpu) / max(count, 1), kept / max(count, 1)


def kept_total(metrics: dict[str, float]) -> float:
    return sum(value for key, value in metrics.items() if key.startswith("bloomkit_samples_kept_total"))


def per_sample_ms(costs: dict[str, list[float]], kept: dict[str, list[float]], name: str) -> float:
    """The CPU a kept sample costs, in ms: what collection adds per frame over the frames without, per sample
    kept. (A sample the queue had no room for costs next to nothing: the worker was busy, so it is dropped.)"""
    added = statistics.median(costs[name]) - statistics.median(costs["off"])
    return 1000 * added / max(statistics.median(kept[name]), 1e-9)


def measure(model: Path, images: Path, threads: int, rounds: int, seconds: float, share: float,
            baseline: Path | None = None) -> dict:
    common = ("--model", str(model), "--source", f"folder:{images}", "--threads", str(threads))
    collecting = ("--collect-random", f"{share:g}", "--collect-budget-mb", "5000")
    with tempfile.TemporaryDirectory(prefix="bloomkit-collect-bench-") as folder:
        daemons = {"off": Daemon(*common), "on": Daemon(*common, "--collect", f"{folder}/on", *collecting)}
        if baseline is not None:
            daemons["baseline"] = Daemon(*common, "--collect", f"{folder}/baseline", *collecting, code=baseline)
        try:
            for daemon in daemons.values():
                daemon.wait_for_count("bloomkit_inferences_total", 50, timeout=180)  # warmed up, folder decoded
            rates: dict[str, list[float]] = {name: [] for name in daemons}
            costs: dict[str, list[float]] = {name: [] for name in daemons}
            kept: dict[str, list[float]] = {name: [] for name in daemons}
            for number in range(rounds):
                order = list(daemons)[number % len(daemons):] + list(daemons)[:number % len(daemons)]
                for name in order:
                    for other in daemons.values():
                        other.pause()
                    daemons[name].resume()
                    time.sleep(0.5)
                    per_second, per_frame, kept_per_frame = rate(daemons[name], seconds)
                    rates[name].append(per_second)
                    costs[name].append(per_frame)
                    kept[name].append(kept_per_frame)
                for daemon in daemons.values():
                    daemon.resume()
            collected = {key: value for key, value in daemons["on"].metrics().items()
                         if key.startswith("bloomkit_samples")}
        finally:
            for daemon in daemons.values():
                daemon.resume()
                daemon.stop()
    ratios = [with_collection / without for with_collection, without in zip(rates["on"], rates["off"])]
    extra = {}
    if baseline is not None:
        extra = {"baseline_per_s": round(statistics.median(rates["baseline"]), 1),
                 "baseline_ratio": round(statistics.median(b / o for b, o in zip(rates["baseline"], rates["off"])), 3),
                 "cpu_ms_per_frame_baseline": round(1000 * statistics.median(costs["baseline"]), 2),
                 "cpu_ms_per_sample_baseline": round(per_sample_ms(costs, kept, "baseline"), 2),
                 "baseline_cpu_bound_ratio": round(cpu_bound(costs, kept, "baseline", share), 3)}
    return {**extra, "threads": threads, "collect_random": share, "off_per_s": round(statistics.median(rates["off"]), 1),
            "on_per_s": round(statistics.median(rates["on"]), 1), "ratio": round(statistics.median(ratios), 3),
            "round_ratios": [round(r, 3) for r in ratios],
            "cpu_ms_per_frame_off": round(1000 * statistics.median(costs["off"]), 2),
            "cpu_ms_per_frame_on": round(1000 * statistics.median(costs["on"]), 2),
            "cpu_ms_per_sample": round(per_sample_ms(costs, kept, "on"), 2),
            "cpu_bound_ratio": round(cpu_bound(costs, kept, "on", share), 3),
            "kept": int(sum(v for k, v in collected.items() if k.startswith("bloomkit_samples_kept_total"))),
            "dropped": int(sum(v for k, v in collected.items() if k.startswith("bloomkit_samples_dropped_total"))),
            "bytes": int(collected.get("bloomkit_samples_bytes", 0))}


def cpu_bound(costs: dict[str, list[float]], kept: dict[str, list[float]], name: str, share: float) -> float:
    """The rate's ratio with every core busy and every chosen frame kept: then the rate falls as the CPU per
    frame grows, by `share` x the CPU per sample. The verdict load does not move."""
    off = 1000 * statistics.median(costs["off"])
    return off / (off + share * per_sample_ms(costs, kept, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    parser.add_argument("--images", type=Path, default=FLOWERS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--share", type=float, default=0.2, help="--collect-random (default 0.2)")
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also collect with the code of this checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(args.model, args.images, threads, args.rounds, args.seconds, args.share, args.baseline)
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
            print(f"  CPU per frame {row['cpu_ms_per_frame_off']} ms off, {row['cpu_ms_per_frame_on']} ms on; "
                  f"{row['cpu_ms_per_sample']} ms per sample kept: ratio with every core busy and every chosen frame "
                  f"kept {row['cpu_bound_ratio']:.3f}; kept {row['kept']} samples "
                  f"({row['bytes'] / 1e6:.1f} MB), dropped {row['dropped']}; load average {os.getloadavg()[0]:.1f}")
            if "baseline_ratio" in row:
                print(f"  baseline {args.baseline}: {row['baseline_per_s']}/s, ratio {row['baseline_ratio']:.3f}; "
                      f"CPU per frame {row['cpu_ms_per_frame_baseline']} ms, {row['cpu_ms_per_sample_baseline']} ms per "
                      f"sample kept: ratio with every core busy {row['baseline_cpu_bound_ratio']:.3f}")
    raise SystemExit(0 if all(row["ratio"] >= TARGET for row in rows) else 1)


if __name__ == "__main__":
    main()

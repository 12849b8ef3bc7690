"""Does the daemon keep inference busy? Its rate on a folder replay at fps 0 against the invoke-only rate.

With frames always waiting (`--source folder:DIR --source-fps 0`), the daemon's inferences per second
should be at least 90% of what the bare interpreter manages (`Classifier.infer` on prepared tensors, as
`device bench` times invoke-only), at the same thread count. The invoke-only rate is measured just before
and just after the daemon, on the same machine, and averaged.

    .venv/bin/python benchmarks/daemon_rate.py [--threads 1 2] [--seconds 20] [--json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from daemon_process import FLOWERS, REFERENCE_MODEL, Daemon

from device import imaging
from device.classifier import Classifier

TARGET = 0.90


def invoke_rate(model: Path, threads: int, photos: list[Path], seconds: float) -> float:
    classifier = Classifier(model, threads=threads)
    tensors = [classifier.prepare(imaging.decode(photo)) for photo in photos[:16]]
    for tensor in tensors[:5]:
        classifier.infer(tensor)
    count, began = 0, time.perf_counter()
    for tensor in itertools.cycle(tensors):
        classifier.infer(tensor)
        count += 1
        if time.perf_counter() - began >= seconds:
            return count / (time.perf_counter() - began)
    raise AssertionError("unreachable")


def daemon_rate(model: Path, threads: int, images: Path, seconds: float) -> tuple[float, dict]:
    daemon = Daemon("--model", str(model), "--source", f"folder:{images}", "--source-fps", "0",
                    "--threads", str(threads))
    try:
        daemon.wait_for_inferences(50, timeout=120)  # warmed up, folder decoded
        first, began = daemon.metrics(), time.monotonic()
        time.sleep(seconds)
        last, ended = daemon.metrics(), time.monotonic()
    finally:
        daemon.stop()
    rate = (last["bloomkit_inferences_total"] - first["bloomkit_inferences_total"]) / (ended - began)
    return rate, {"dropped": last["bloomkit_frames_dropped_total"], "frames": last["bloomkit_frames_total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    parser.add_argument("--images", type=Path, default=FLOWERS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    photos = sorted(args.images.rglob("*.jpg"))
    rows = []
    for threads in args.threads:
        before = invoke_rate(args.model, threads, photos, args.seconds / 2)
        daemon, counts = daemon_rate(args.model, threads, args.images, args.seconds)
        after = invoke_rate(args.model, threads, photos, args.seconds / 2)
        invoke = (before + after) / 2
        rows.append({"threads": threads, "invoke_only_per_s": round(invoke, 1), "daemon_per_s": round(daemon, 1),
                     "ratio": round(daemon / invoke, 3), "invoke_before_after": [round(before, 1), round(after, 1)],
                     **counts})
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"model {args.model.name}, folder replay of {len(photos)} photos at fps 0")
        print("threads  invoke-only/s  daemon/s  ratio  (target >= 0.90)")
        for row in rows:
            verdict = "ok" if row["ratio"] >= TARGET else "BELOW TARGET"
            print(f"{row['threads']:>7}  {row['invoke_only_per_s']:>13}  {row['daemon_per_s']:>8}  "
                  f"{row['ratio']:.3f}  {verdict}   (invoke-only before/after {row['invoke_before_after']})")
    raise SystemExit(0 if all(row["ratio"] >= TARGET for row in rows) else 1)


if __name__ == "__main__":
    main()

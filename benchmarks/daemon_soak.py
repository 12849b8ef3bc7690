"""A long run of the daemon: memory, threads and open files must not grow.

Replays the flower photos as a 60 fps camera would deliver them (`--source-fps 60`: the capture thread,
latest frame wins, inference as fast as it goes) for at least 10,000 frames, while a client polls
/api/latest and /healthz and now and then watches the MJPEG stream for a second. Resident memory after
the last frame must be within 5% of what it was after the first 1,000; the thread and file-handle
counts (/proc/PID/status, /proc/PID/fd) must not grow.

    .venv/bin/python benchmarks/daemon_soak.py [--frames 10000] [--source-fps 60] [--threads 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
from pathlib import Path

from daemon_process import FLOWERS, REFERENCE_MODEL, Daemon

BASELINE_FRAMES = 1000
MEMORY_TOLERANCE = 0.05
FRAMES = "bloomkit_frames_total"


def keep_polling(daemon: Daemon, stop: threading.Event, quiet: threading.Lock) -> None:
    """A live page's traffic: results twice a second, the view for a second every ten."""
    rounds = 0
    while not stop.wait(0.5):
        with quiet:
            daemon.get("/api/latest")
            daemon.get("/healthz")
            rounds += 1
            if rounds % 20 == 0:
                with urllib.request.urlopen(daemon.url + "/stream.mjpg", timeout=10) as stream:
                    began = time.monotonic()
                    while time.monotonic() - began < 1.0:
                        stream.read(4096)


def sample(daemon: Daemon, at: int, timeout: float, quiet: threading.Lock) -> dict:
    """Resources once `at` frames were captured, taken at rest: no request in flight for a second."""
    daemon.wait_for_count(FRAMES, at, timeout)
    with quiet:
        time.sleep(1.0)
        resources = daemon.resources()
        metrics = daemon.metrics()
        return {"frames": int(metrics[FRAMES]), "inferences": int(metrics["bloomkit_inferences_total"]), **resources}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    parser.add_argument("--images", type=Path, default=FLOWERS)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--source-fps", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    daemon = Daemon("--model", str(args.model), "--source", f"folder:{args.images}",
                    "--source-fps", f"{args.source_fps:g}", "--threads", str(args.threads),
                    "--smooth", "5", "--jsonl", "/dev/null")
    stop, quiet = threading.Event(), threading.Lock()
    poller = threading.Thread(target=keep_polling, args=(daemon, stop, quiet), daemon=True)
    poller.start()
    began = time.monotonic()
    samples = []
    try:
        for at in range(BASELINE_FRAMES, args.frames + 1, max(BASELINE_FRAMES, args.frames // 10)):
            samples.append(sample(daemon, at, 3600, quiet))
            if not args.json:
                print(f"{samples[-1]}", flush=True)
        if samples[-1]["frames"] < args.frames:
            samples.append(sample(daemon, args.frames, 3600, quiet))
        metrics = daemon.metrics()
    finally:
        stop.set()
        poller.join(5)
        code = daemon.stop()
    baseline, final = samples[0], samples[-1]
    growth = final["rss_kb"] / baseline["rss_kb"] - 1
    result = {
        "frames": final["frames"], "inferences": final["inferences"],
        "dropped": int(metrics["bloomkit_frames_dropped_total"]), "seconds": round(time.monotonic() - began, 1),
        "rss_mb_after_1000": round(baseline["rss_kb"] / 1024, 1), "rss_mb_at_end": round(final["rss_kb"] / 1024, 1),
        "rss_growth": round(growth, 4), "threads": [baseline["threads"], final["threads"]],
        "fds": [baseline["fds"], final["fds"]], "exit_code": code, "samples": samples,
    }
    ok = (abs(growth) <= MEMORY_TOLERANCE and final["threads"] <= baseline["threads"]
          and final["fds"] <= baseline["fds"] and code == 0)
    if args.json:
        print(json.dumps({**result, "ok": ok}))
    else:
        print(f"{result['frames']} frames ({result['inferences']} classified, {result['dropped']} dropped) in "
              f"{result['seconds']} s; RSS {result['rss_mb_after_1000']} MB after "
              f"{BASELINE_FRAMES} -> {result['rss_mb_at_end']} MB at the end ({growth:+.2%}, limit ±5%); "
              f"threads {result['threads']}; open files {result['fds']}; exit {code}: {'ok' if ok else 'FAILED'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Does publishing to MQTT cost inference rate, and how soon does a subscriber hear of a new label?

1. Rate: two `device run` daemons on the same scene at `--source-fps 0` (frames always waiting), one with
   `--mqtt` (state, events, snapshots, metrics every second, Home Assistant discovery) and one without,
   measured in alternating rounds (the other one paused with SIGSTOP), so machine load hits both alike.
   Target: MQTT on >= 0.95x of off (median of the rounds' ratios).
2. Latency: one daemon at `--source-fps 10` on a scene whose label changes every second; a paho subscriber
   notes when each `start` event arrives. "Beyond the window" runs from the capture of the frame that
   completed the debounce (the event's `at`) to the arrival; "from presence" runs from the first frame of
   the label (the event's `start`), so it includes the debounce window itself. Target: p95 beyond the
   window <= 50 ms.

    .venv/bin/python benchmarks/events_mqtt.py [--rounds 5] [--seconds 5] [--latency-seconds 60] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from daemon_process import FLOWERS, REFERENCE_MODEL, Daemon

from testkit.mosquitto import Mosquitto, Recorder
from testkit.scenes import clearest_photos, write_scene

RATE_TARGET = 0.95
LATENCY_TARGET_MS = 50.0


def scene(folder: Path, model: Path, frames_each: int) -> Path:
    """Each label's clearest photo for `frames_each` frames in turn: a label change (end + start) per block."""
    return write_scene(folder, [(label, photo, frames_each) for label, photo in clearest_photos(model, FLOWERS).items()])


def rate(daemon: Daemon, seconds: float) -> tuple[float, float]:
    """(inferences per second, the share of wall time the loop spent classifying)."""
    first, began = daemon.metrics(), time.monotonic()
    time.sleep(seconds)
    last, elapsed = daemon.metrics(), time.monotonic() - began
    inferences = last["bloomkit_inferences_total"] - first["bloomkit_inferences_total"]
    busy = last["bloomkit_inference_latency_seconds_sum"] - first["bloomkit_inference_latency_seconds_sum"]
    return inferences / elapsed, busy / elapsed


def measure_rate(model: Path, images: Path, broker: Mosquitto, rounds: int, seconds: float) -> dict:
    common = ("--model", str(model), "--source", f"folder:{images}", "--source-fps", "0", "--threads", "1")
    off = Daemon(*common)
    on = Daemon(*common, "--mqtt", broker.url, "--device-id", "bench", "--mqtt-metrics-interval", "1")
    recorder = Recorder(broker.port, ("bloomkit/bench/#",))
    measured: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    try:
        for daemon in (off, on):
            daemon.wait_for_count("bloomkit_inferences_total", 50, timeout=120)
        for round_number in range(rounds):
            order = (("off", off, on), ("on", on, off))
            for name, daemon, other in order if round_number % 2 == 0 else order[::-1]:  # neither always goes first
                other.pause()
                time.sleep(0.3)
                measured[name].append(rate(daemon, seconds))
                other.resume()
        health = on.json("/healthz")[1]
    finally:
        for daemon in (off, on):
            daemon.resume()
            daemon.stop()
        recorder.close()
    rates_off, rates_on = ([r for r, _ in measured[name]] for name in ("off", "on"))
    busy_off, busy_on = (statistics.median(b for _, b in measured[name]) for name in ("off", "on"))
    ratios = [b / a for a, b in zip(rates_off, rates_on)]
    messages = {kind: len(recorder.on(f"bloomkit/bench/{kind}")) for kind in ("events", "state", "snapshot", "metrics")}
    return {"off_per_s": round(statistics.median(rates_off), 1), "on_per_s": round(statistics.median(rates_on), 1),
            "ratio": round(statistics.median(ratios), 3), "round_ratios": [round(r, 3) for r in ratios],
            "busy_off": round(busy_off, 3), "busy_on": round(busy_on, 3), "busy_ratio": round(busy_on / busy_off, 3),
            "messages": messages, "mqtt": health["mqtt"]}


def seconds_of(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure_latency(model: Path, images: Path, broker: Mosquitto, seconds: float, min_frames: int) -> dict:
    recorder = Recorder(broker.port, ("bloomkit/lat/events",))
    daemon = Daemon("--model", str(model), "--source", f"folder:{images}", "--source-fps", "10", "--threads", "1",
                    "--mqtt", broker.url, "--device-id", "lat", "--event-min-frames", str(min_frames))
    try:
        daemon.wait_for_count("bloomkit_inferences_total", 20, timeout=120)
        began = time.time()
        time.sleep(seconds)
    finally:
        daemon.stop()
        recorder.close()
    beyond, whole = [], []
    for topic, payload, _, arrived in recorder.messages:
        event = json.loads(payload)
        if event["type"] == "start" and seconds_of(event["at"]) >= began:
            beyond.append(1000 * (arrived - seconds_of(event["at"])))
            whole.append(1000 * (arrived - seconds_of(event["start"])))
    return {"starts": len(beyond), "min_frames": min_frames, "window_ms": round(1000 * (min_frames - 1) / 10.0),
            "beyond_p50_ms": round(statistics.median(beyond), 1), "beyond_p95_ms": round(percentile(beyond, 0.95), 1),
            "beyond_max_ms": round(max(beyond), 1), "from_presence_p50_ms": round(statistics.median(whole), 1),
            "from_presence_p95_ms": round(percentile(whole, 0.95), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement in a round")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--min-frames", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bloomkit-events-bench-") as folder:
        folder = Path(folder)
        broker = Mosquitto(folder)
        try:
            rated = measure_rate(args.model, scene(folder / "fast", args.model, 20), broker, args.rounds, args.seconds)
            timed = measure_latency(args.model, scene(folder / "paced", args.model, 10), broker,
                                    args.latency_seconds, args.min_frames)
        finally:
            broker.stop()
    if args.json:
        print(json.dumps({"rate": rated, "latency": timed}))
    else:
        print(f"rate at fps 0, 1 thread, {args.rounds} alternating rounds of {args.seconds:g} s:")
        print(f"  MQTT off {rated['off_per_s']}/s, on {rated['on_per_s']}/s, ratio {rated['ratio']} "
              f"(rounds {rated['round_ratios']}); target >= {RATE_TARGET}: "
              f"{'ok' if rated['ratio'] >= RATE_TARGET else 'BELOW TARGET'}")
        print(f"  share of wall time spent classifying: off {rated['busy_off']}, on {rated['busy_on']} "
              f"(ratio {rated['busy_ratio']}: what load does not move)")
        print(f"  messages while on: {rated['messages']}; mqtt {rated['mqtt']}")
        print(f"event latency at 10 fps, --event-min-frames {timed['min_frames']} (window {timed['window_ms']} ms), "
              f"{timed['starts']} start events:")
        print(f"  beyond the window p50 {timed['beyond_p50_ms']} ms, p95 {timed['beyond_p95_ms']} ms, max "
              f"{timed['beyond_max_ms']} ms; target p95 <= {LATENCY_TARGET_MS:g} ms: "
              f"{'ok' if timed['beyond_p95_ms'] <= LATENCY_TARGET_MS else 'ABOVE TARGET'}")
        print(f"  from the first frame of the label p50 {timed['from_presence_p50_ms']} ms, "
              f"p95 {timed['from_presence_p95_ms']} ms")
    raise SystemExit(0 if rated["ratio"] >= RATE_TARGET and timed["beyond_p95_ms"] <= LATENCY_TARGET_MS else 1)


if __name__ == "__main__":
    main()

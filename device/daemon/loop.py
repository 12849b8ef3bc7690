"""The daemon: capture in one thread, inference on the newest frame in this one, results out, model reloads.

Frigate-like split: sources know cameras, the capture thread knows pacing and retries, this loop knows
the model, and the HTTP server only reads the state this loop publishes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from device.daemon.capture import Capture, LatestFrame
from device.daemon.config import Settings
from device.daemon.models import ModelWatcher
from device.daemon.outputs import ChangeEvents, JsonLines, result_record
from device.daemon.smoothing import Smoother, make_smoother
from device.daemon.sources import Frame, FrameSource
from device.daemon.stats import EventCount, LatencyHistogram, RollingRate
from device.errors import UserError

FRESH_FOR_S = 2.0  # a frame older than this (or three source intervals) means frames are not flowing


class FrameGapError(UserError):
    """The source delivered no frame for longer than --max-frame-gap."""


@dataclass
class Counters:
    inferences: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    rate: RollingRate = field(default_factory=RollingRate)
    http_disconnects: EventCount = field(default_factory=EventCount)


class Daemon:
    """Runs until `stop()` (returns normally) or until the source is silent too long (raises `FrameGapError`)."""

    def __init__(self, settings: Settings, source: FrameSource, models: ModelWatcher) -> None:
        self.settings = settings
        self.source = source
        self.models = models
        self.frames = LatestFrame()
        self.capture = Capture(source, self.frames)
        self.counters = Counters()
        self.started = time.monotonic()
        self._smoother = self._new_smoother()
        jsonl = settings.jsonl or ("-" if settings.on_change else None)  # events go to stdout unless told
        self._jsonl = JsonLines(jsonl, max_bytes=int(settings.jsonl_max_mb * 1e6)) if jsonl else None
        self._changes = ChangeEvents() if settings.on_change else None
        self._latest: dict | None = None
        self._last_latency = 0.0
        self._stopping = threading.Event()
        self.fresh_for_s = min(max(FRESH_FOR_S, 3.0 * source.interval), settings.max_frame_gap)

    def stop(self) -> None:
        """Ask the loop to finish after the current frame (safe from a signal handler or another thread)."""
        self._stopping.set()

    def run(self) -> None:
        """Classify frames until `stop()`; the caller then calls `close()` and closes the source."""
        if not self.source.on_demand:
            self.capture.start()
        while not self._stopping.is_set():
            if self.models.reload_if_changed():
                self._smoother = self._new_smoother()
            frame = self.capture.pull() if self.source.on_demand else self.frames.take(timeout=0.2)
            if frame is None:
                self._check_frame_gap()
                continue
            self._classify(frame)

    def close(self) -> None:
        """Stop capturing (so the source can be released) and flush the outputs."""
        self._stopping.set()
        self.capture.stop(timeout=1.0)
        if self._jsonl:
            self._jsonl.close()

    def _classify(self, frame: Frame) -> None:
        classifier = self.models.classifier
        began = time.perf_counter()
        scores = classifier.scores(frame.image)
        latency = time.perf_counter() - began
        self._last_latency = latency
        categories = classifier.top(self._smoother.update(scores))
        counters = self.counters
        counters.inferences += 1
        counters.latency.observe(latency)
        counters.rate.tick()
        record = result_record(counters.inferences, categories, counters.rate.per_second(), latency,
                               time.monotonic() - frame.captured, classifier.info.name)
        self._latest = record
        if self._changes:
            record = self._changes.event(record)
        if self._jsonl and record:
            self._jsonl.write(record)

    def _check_frame_gap(self) -> None:
        silent_for = time.monotonic() - (self.frames.last_received or self.started)
        if silent_for > self.settings.max_frame_gap:
            reason = f" ({self.capture.problem})" if self.capture.problem else ""
            raise FrameGapError(f"source {self.source.name}: no frames for {silent_for:.0f} s{reason}; giving up")

    def _new_smoother(self) -> Smoother:
        return make_smoother(self.settings.smooth, self.settings.ema)

    # What the HTTP server reads. Each is a consistent snapshot; none blocks the loop.

    def latest(self) -> dict | None:
        return self._latest

    def frame_age(self) -> float | None:
        last = self.frames.last_received
        return None if last is None else time.monotonic() - last

    def _fresh_for(self) -> float:
        """How old the newest frame may be: longer on hardware slow enough that one inference takes seconds."""
        return min(max(self.fresh_for_s, 3.0 * self._last_latency), self.settings.max_frame_gap)

    def health(self) -> dict:
        """The /healthz body (docs/architecture.md): ok only while frames flow and a model is loaded."""
        age = self.frame_age()
        problem = self.capture.problem
        if age is None:
            reason = problem or "waiting for the first frame"
        elif age > self._fresh_for():
            reason = f"no frames for {age:.1f} s" + (f": {problem}" if problem else "")
        else:
            reason = None
        classifier = self.models.classifier
        return {
            "status": "ok" if reason is None else "unhealthy",
            "reason": reason,
            "model": {
                "path": str(self.settings.model),
                "name": classifier.info.name,
                "version": classifier.info.version,
                "sha256": classifier.model_sha256,
            },
            "rejected_model": self.models.rejected,  # {"sha256", "reason"} of a new file that does not load
            "source": self.source.name,
            "fps": round(self.counters.rate.per_second(), 2),
            "frames": self.frames.received,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "warnings": [self._jsonl.problem] if self._jsonl and self._jsonl.problem else [],  # ok, but losing data
        }

    @property
    def jsonl(self) -> JsonLines | None:
        return self._jsonl

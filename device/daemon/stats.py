"""Rolling frame rate, an inference latency histogram and event counts (the numbers /metrics and the live page show)."""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class RollingRate:
    """Events per second over the last `window_s` seconds (ticked by the loop, read by the HTTP server)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            while now - self._times[0] > self._window_s:
                self._times.popleft()

    def per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = [t for t in self._times if now - t <= self._window_s]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0


class LatencyHistogram:
    """A Prometheus-style cumulative histogram of inference latencies, in seconds (thread-safe)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._count = 0
        self._total_s = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._count += 1
            self._total_s += seconds

    def snapshot(self) -> tuple[list[tuple[str, int]], int, float]:
        """(the (le, count of observations ≤ le) rows ending with +Inf, count, sum), all of one moment."""
        with self._lock:
            counts, count, total_s = list(self._counts), self._count, self._total_s
        bounds = [repr(bound) for bound in self.buckets] + ["+Inf"]
        running, rows = 0, []
        for bound, bucket in zip(bounds, counts):
            running += bucket
            rows.append((bound, running))
        return rows, count, total_s


class EventCount:
    """A count of events that several threads add to (such as HTTP clients that went away)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1

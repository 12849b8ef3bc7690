"""Per label, over a rolling window: how many frames it topped and their mean top score.

Drift shows here first: a label whose mean top score falls week on week is meeting frames the model
was not trained on. Counts live in one bucket per minute, so memory stays flat however long it runs.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Sequence

import numpy as np

WINDOW_S = 3600.0
BUCKET_S = 60.0


class LabelWindow:
    """Fed every classified frame by the loop (`observe`), read by /metrics and /api/stats (`snapshot`)."""

    def __init__(self, window_s: float = WINDOW_S, bucket_s: float = BUCKET_S) -> None:
        self.window_s = window_s
        self._bucket_s = bucket_s
        self._buckets: deque[tuple[int, dict[str, list[float]]]] = deque()  # (bucket number, {label: [n, sum]})
        self._lock = threading.Lock()

    def observe(self, labels: Sequence[str], scores: np.ndarray, now: float | None = None) -> None:
        best = int(np.argmax(scores))
        label, score = labels[best], float(scores[best])
        number = int((time.monotonic() if now is None else now) // self._bucket_s)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != number:
                self._buckets.append((number, {}))
                self._forget(number)
            entry = self._buckets[-1][1].setdefault(label, [0, 0.0])
            entry[0] += 1
            entry[1] += score

    def snapshot(self, now: float | None = None) -> dict[str, dict]:
        """{label: {"count", "mean_top_score"}} over the window, labels by name."""
        number = int((time.monotonic() if now is None else now) // self._bucket_s)
        totals: dict[str, list[float]] = {}
        with self._lock:
            self._forget(number)
            for _, bucket in self._buckets:
                for label, (count, total) in bucket.items():
                    entry = totals.setdefault(label, [0, 0.0])
                    entry[0] += count
                    entry[1] += total
        return {label: {"count": int(count), "mean_top_score": round(total / count, 4)}
                for label, (count, total) in sorted(totals.items())}

    def _forget(self, number: int) -> None:
        oldest = number - int(self.window_s // self._bucket_s) + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()

"""Events: the debouncer that turns a flickering top label into a steady state with start, update and end.

A label becomes the state once it held above the threshold for `min_frames` frames in a row (or, when
`min_seconds` is set, for that long); the state clears once its label has been absent for
`clear_seconds`. The gap between the two rules is the hysteresis that keeps one blink of a wrong label
from ending an event, and one lucky frame from starting one. Pure: time comes in with each frame.
"""
from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

UPDATE_EVERY_S = 1.0  # a better score is reported at most this often, so a rising score does not flood


@dataclass(frozen=True)
class Debounce:
    min_frames: int = 3
    min_seconds: float = 0.0  # 0: count frames; else the label must hold this long instead
    threshold: float = 0.5
    clear_seconds: float = 2.0


@dataclass
class Event:
    """One presence of a label in a region. Times are `time.monotonic()` seconds; `best_image` is the frame
    (or region) with the best score, kept by reference for the snapshot."""

    id: str
    region: str | None
    label: str
    score: float
    start: float
    best_at: float
    best_image: Any = None
    end: float | None = None
    snapshot: str | None = None  # set once the snapshot is stored

    def record(self, kind: str, at: float) -> dict:
        """The JSON of an `events` message; `at` is when the frame that caused it was captured."""
        return {
            "type": kind,
            "id": self.id,
            "region": self.region,
            "label": self.label,
            "score": round(self.score, 4),
            "start": wall_time(self.start),
            "end": None if self.end is None else wall_time(self.end),
            "duration_s": round((self.end if self.end is not None else at) - self.start, 3),
            "snapshot": self.snapshot,
            "at": wall_time(at),
        }


@dataclass(frozen=True)
class Transition:
    """What a frame changed: `kind` is start, update or end; `event` is a copy as of that frame."""

    kind: str
    event: Event
    at: float


class Debouncer:
    """The state of one region (None: the whole frame), fed the top label of each classified frame."""

    def __init__(self, rules: Debounce, region: str | None = None) -> None:
        self.rules = rules
        self.region = region
        self.current: Event | None = None
        self._run_label: str | None = None
        self._run_start = 0.0
        self._run_frames = 0
        self._run_best: tuple[float, float, Any] = (0.0, 0.0, None)  # score, at, image
        self._last_seen = 0.0
        self._reported_at = 0.0
        self._unreported = False

    def observe(self, label: str | None, score: float, at: float, image: Any = None) -> list[Transition]:
        """Feed one frame's top label and score; returns the transitions it caused (often none)."""
        candidate = label if label is not None and score >= self.rules.threshold else None
        self._track_run(candidate, score, at, image)
        current = self.current
        if current is not None and candidate == current.label:
            self._last_seen = at
            if score > current.score:
                current.score, current.best_at, current.best_image = score, at, image
                self._unreported = True
            if self._unreported and at - self._reported_at >= UPDATE_EVERY_S:
                return [self._report("update", at)]
            return []
        transitions = []
        if candidate is not None and self._held(at):
            if current is not None:
                transitions.append(self._end(at))
            score, best_at, best_image = self._run_best
            self.current = Event(new_event_id(), self.region, candidate, score, self._run_start, best_at, best_image)
            self._last_seen = at
            transitions.append(self._report("start", at))
        elif current is not None and at - self._last_seen >= self.rules.clear_seconds:
            transitions.append(self._end(at))
        return transitions

    def forget_labels_except(self, labels: tuple[str, ...], at: float) -> list[Transition]:
        """A new model: an event whose label the model no longer has ends now."""
        self._run_label, self._run_frames = None, 0
        if self.current is not None and self.current.label not in labels:
            return [self._end(at)]
        return []

    def close(self, at: float) -> list[Transition]:
        """Shutting down: end the open event, so a consumer is not left with a presence that never ends."""
        return [self._end(at)] if self.current is not None else []

    def state(self) -> dict:
        """The retained `state` message: the label that is the state now, or nulls."""
        current = self.current
        return {
            "region": self.region,
            "label": current.label if current else None,
            "score": round(current.score, 4) if current else None,
            "since": wall_time(current.start) if current else None,
            "event": current.id if current else None,
        }

    def _track_run(self, candidate: str | None, score: float, at: float, image: Any) -> None:
        if candidate != self._run_label or self._run_frames == 0:
            self._run_label, self._run_start, self._run_frames = candidate, at, 0
            self._run_best = (score, at, image)
        self._run_frames += 1
        if score > self._run_best[0]:
            self._run_best = (score, at, image)

    def _held(self, at: float) -> bool:
        if self.rules.min_seconds > 0:
            return at - self._run_start >= self.rules.min_seconds
        return self._run_frames >= self.rules.min_frames

    def _report(self, kind: str, at: float) -> Transition:
        self._reported_at, self._unreported = at, False
        return Transition(kind, dataclasses.replace(self.current), at)

    def _end(self, at: float) -> Transition:
        event = self.current
        event.end = self._last_seen
        self.current = None
        return Transition("end", dataclasses.replace(event), at)


def new_event_id() -> str:
    """Sortable by time, unique without coordination, safe in a URL and a file name."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3] + "-" + secrets.token_hex(3)


def wall_time(monotonic: float) -> str:
    """A `time.monotonic()` instant as an ISO 8601 UTC timestamp."""
    seconds = time.time() - (time.monotonic() - monotonic)
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

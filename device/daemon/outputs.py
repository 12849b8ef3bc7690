"""Result records and where they go: JSON Lines on stdout or a file, every frame or only on a change of label."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence, TextIO

from device.errors import UserError

if TYPE_CHECKING:
    from device.classifier import Category


def result_record(frame: int, categories: Sequence[Category], fps: float, latency_s: float, age_s: float,
                  model: str | None) -> dict:
    """One classified frame as a JSON-ready dict (also what /api/latest serves).

    `latency_ms` is the inference alone; `age_ms` runs from the frame's capture to its result, and
    stays small however slow inference is, because only the newest frame is classified.
    """
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "frame": frame,
        "top": top_record(categories),
        "fps": round(fps, 2),
        "latency_ms": round(latency_s * 1000.0, 2),
        "age_ms": round(age_s * 1000.0, 2),
        "model": model,
    }


def top_record(categories: Sequence[Category]) -> list[dict]:
    return [{"label": c.label, "score": round(float(c.score), 4), "index": c.index} for c in categories]


class JsonLines:
    """Writes one JSON object per line to stdout (`-`) or appends to a file, flushed line by line."""

    def __init__(self, target: str) -> None:
        self._own = target != "-"
        try:
            self._stream: TextIO = open(target, "a", encoding="utf-8") if self._own else sys.stdout
        except OSError as error:
            raise UserError(f"--jsonl {target}: {error.strerror}") from None

    def write(self, record: dict) -> None:
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
        if self._own:
            self._stream.close()


class ChangeEvents:
    """Turns results into events: a record only when the top label differs from the last one."""

    def __init__(self) -> None:
        self._label: str | None = None
        self._seen = False

    def event(self, record: dict) -> dict | None:
        label = record["top"][0]["label"] if record["top"] else None
        if self._seen and label == self._label:
            return None
        event = {"event": "change", "label": label, "previous": self._label, **record}
        self._label, self._seen = label, True
        return event

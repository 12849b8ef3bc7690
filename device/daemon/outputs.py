"""Result records and where they go: JSON Lines on stdout or a file, every frame or only on a change of label."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from device.errors import UserError, one_line

if TYPE_CHECKING:
    from device.classifier import Category

log = logging.getLogger("device.daemon")

# Errors a running device can recover from: the disk fills and is cleaned, a quota, an I/O hiccup, a pipe.
_PASSING_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.EAGAIN}


def result_record(frame: int, categories: Sequence[Category], fps: float, latency_s: float, age_s: float,
                  model: str | None) -> dict:
    """One classified frame as a JSON-ready dict (also what /api/latest serves).

    `latency_ms` is the inference alone; `age_ms` runs from the frame's capture to its result, and
    stays small however slow inference is, because only the newest frame is classified.
    """
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "frame": frame,
        "top": [{"label": c.label, "score": round(float(c.score), 4), "index": c.index} for c in categories],
        "fps": round(fps, 2),
        "latency_ms": round(latency_s * 1000.0, 2),
        "age_ms": round(age_s * 1000.0, 2),
        "model": model,
    }


class JsonLines:
    """Writes one JSON object per line to stdout (`-`) or appends to a file, each line whole or not at all.

    A file is rotated under a size budget: past `max_bytes` it becomes PATH.1 (replacing the one before)
    and a new PATH begins, so results never fill the disk. A write that fails (a full disk, a closed
    pipe) loses that record, counted in `lost`, and never stops inference: the next record tries again.
    `problem` says why records are being lost, while they are (for /healthz).
    """

    def __init__(self, target: str, max_bytes: int) -> None:
        self.name = "standard output" if target == "-" else target
        self._path = None if target == "-" else target
        self._max_bytes = max_bytes
        self._fd: int | None = None if self._path else sys.stdout.fileno()
        self._size = 0
        self._rotates = False
        self.lost = 0
        self.rotations = 0
        self.problem: str | None = None
        if self._path:
            try:
                self._open()
            except OSError as error:
                if error.errno not in _PASSING_ERRORS:  # a wrong path or permission will not fix itself
                    raise UserError(f"--jsonl {target}: {error.strerror}") from None
                self._report(error)

    def write(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            if self._path:
                if self._fd is None:
                    self._open()
                if self._rotates and self._size and self._size + len(line) > self._max_bytes:
                    self._rotate()
            self._write(line)
        except OSError as error:
            self.lost += 1
            self._report(error)
            return
        if self.problem is not None:
            log.info("--jsonl %s: writing again (%d records lost meanwhile)", self.name, self.lost)
            self.problem = None

    def close(self) -> None:
        if self._path and self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        facts = os.fstat(self._fd)
        self._size = facts.st_size
        self._rotates = stat.S_ISREG(facts.st_mode)  # never rename a FIFO or a device such as /dev/stderr

    def _rotate(self) -> None:
        os.replace(self._path, self._path + ".1")
        os.close(self._fd)
        self._fd = None
        self._open()
        self.rotations += 1

    def _write(self, line: bytes) -> None:
        """All of `line`, or none of it: a file cut back to its last whole line if a write falls short."""
        written = 0
        try:
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError:
            if self._path and written:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            raise
        self._size += written

    def _report(self, error: OSError) -> None:
        problem = f"--jsonl {self.name}: {error.strerror or one_line(error)}"
        if problem != self.problem:
            log.warning("%s; results are not written until it can be (inference goes on)", problem)
        self.problem = problem


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

"""Event snapshots on disk: one JPEG per event, named by its id, the oldest removed once over a size budget.

They live in the data directory (`<data-dir>/snapshots/`), outside the releases, so a deploy or a
rollback keeps them; the budget keeps a camera running for months from filling the SD card.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
from pathlib import Path

from device.errors import UserError, one_line

log = logging.getLogger("device.daemon")

EVENT_ID = re.compile(r"[0-9A-Za-z_-]{1,80}")


class SnapshotError(UserError):
    """The snapshot folder cannot be made or written."""


class SnapshotStore:
    def __init__(self, folder: Path, budget_bytes: int) -> None:
        self.folder = folder
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        try:
            self._make_folder()
        except OSError as error:
            if error.errno != errno.ENOSPC:  # a full disk is weather, not a mistake: save() says so and tries again
                raise SnapshotError(f"snapshots {folder}: {error.strerror or one_line(error)}") from None
        if folder.is_dir() and not os.access(folder, os.W_OK):
            raise SnapshotError(f"snapshots {folder}: not writable by this user")

    def _make_folder(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, event_id: str) -> Path | None:
        """The snapshot of an event, or None (also for an id that is not one, such as `../x`)."""
        if not EVENT_ID.fullmatch(event_id):
            return None
        path = self.folder / f"{event_id}.jpg"
        return path if path.is_file() else None

    def save(self, event_id: str, jpeg: bytes) -> bool:
        """Write (or replace) an event's snapshot, then trim to the budget; False, and one log line, if the disk says no."""
        if not EVENT_ID.fullmatch(event_id):
            raise ValueError(f"not an event id: {event_id!r}")
        with self._lock:
            path, temporary = self.folder / f"{event_id}.jpg", self.folder / f".{event_id}.jpg.tmp"
            try:  # renamed into place, so a reader never gets half a JPEG; no fsync: a snapshot is not worth the wait
                self._make_folder()
                temporary.write_bytes(jpeg)
                os.replace(temporary, path)
            except OSError as error:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                log.warning("snapshot %s not saved: %s", event_id, error.strerror or one_line(error))
                return False
            self._trim(keep=f"{event_id}.jpg")
            return True

    def _trim(self, keep: str) -> None:
        """Remove the oldest snapshots (by name, which starts with the event's start time) until under budget."""
        entries = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".jpg") and not entry.name.startswith("."):
                entries.append((entry.name, entry.stat().st_size))
        entries.sort()
        total = sum(size for _, size in entries)
        for name, size in entries:
            if total <= self.budget_bytes:
                break
            if name == keep:
                continue
            try:
                os.unlink(self.folder / name)
            except FileNotFoundError:
                pass
            total -= size

"""The samples folder: what a kept frame looks like on disk, for the daemon that writes it and the tools that
read it (`fab collect`, `trainer review`).

A sample is `NAME.jpg` (the frame as the camera gave it) and `NAME.json` (its sidecar: time, host, source,
model, every label's score, why it was kept, the JPEG's size and sha256). Names sort by time. Both files
are written under temporary names and renamed, the JPEG first: a sample exists once its sidecar does, so a
power cut leaves at worst a hidden temporary file or a lone JPEG, which `SampleStore` removes at start.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from device.atomic import fsync_directory

IMAGE, SIDECAR = ".jpg", ".json"
FORMAT_VERSION = 1
SAMPLES_FOLDER = "samples"        # in the daemon's --data-dir (docs/architecture.md)
INBOX_MARKER = ".bloomkit-inbox"  # `fab collect` marks the workstation folder it fills: INBOX/<host>/NAME.*


def sample_name(when: datetime, sequence: int) -> str:
    """`20261129T071702.123Z-000042`: sorts by time; the sequence tells apart samples of one millisecond."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{when.microsecond // 1000:03d}Z-{sequence:06d}"


def utc_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def complete_names(folder: Path) -> list[str]:
    """The names of the samples in `folder` that have both files, oldest first."""
    try:
        entries = set(os.listdir(folder))
    except FileNotFoundError:
        return []
    return sorted(name[: -len(SIDECAR)] for name in entries
                  if name.endswith(SIDECAR) and not name.startswith(".") and name[: -len(SIDECAR)] + IMAGE in entries)


class SampleError(Exception):
    """A sample that is not whole: a sidecar that does not parse, a JPEG whose size or sha256 differs."""


def read_sample(folder: Path, name: str, check_image: bool = True) -> tuple[dict, bytes | None]:
    """(sidecar, JPEG bytes) of one sample, checked against each other; raises `SampleError` if not whole."""
    try:
        sidecar = json.loads((folder / (name + SIDECAR)).read_text(encoding="utf-8"))
        jpeg = (folder / (name + IMAGE)).read_bytes() if check_image else None
    except (OSError, ValueError) as error:
        raise SampleError(f"{name}: {getattr(error, 'strerror', None) or error}") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("scores"), dict):
        raise SampleError(f"{name}: the sidecar has no scores")
    if jpeg is not None:
        image = sidecar.get("image") or {}
        if image.get("sha256") != hashlib.sha256(jpeg).hexdigest():
            raise SampleError(f"{name}: the JPEG does not match its sidecar (half-written or changed)")
    return sidecar, jpeg


@dataclass
class Written:
    name: str
    bytes: int
    evicted: list[str]


class StoreFull(Exception):
    """One sample is larger than the whole budget."""


class SampleStore:
    """The folder, its samples oldest first and their bytes, kept within `budget` bytes by evicting the oldest.

    Only the daemon's collector writes here; `fab collect` deletes what it has brought home, so the
    index is read again from the folder whenever a write would cross the budget.
    """

    def __init__(self, folder: Path, budget: int) -> None:
        self.folder = folder
        self.budget = budget
        self._sizes: dict[str, int] = {}
        self.total = 0

    def open(self) -> int:
        """Create the folder, remove what a crash left (temporary files, lone halves), index the rest.
        Returns the number of leftovers removed; raises OSError if the folder cannot be made."""
        self.folder.mkdir(parents=True, exist_ok=True)
        complete = set(complete_names(self.folder))
        removed = 0
        for entry in os.listdir(self.folder):
            stem, suffix = os.path.splitext(entry)
            leftover = entry.startswith(".") and entry.endswith(".tmp")
            lone = suffix in (IMAGE, SIDECAR) and not entry.startswith(".") and stem not in complete
            if leftover or lone:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / entry)
                removed += 1
        self.rescan()
        return removed

    def rescan(self) -> None:
        sizes = {}
        for name in complete_names(self.folder):
            with contextlib.suppress(FileNotFoundError):
                sizes[name] = sum((self.folder / (name + suffix)).stat().st_size for suffix in (IMAGE, SIDECAR))
        self._sizes, self.total = sizes, sum(sizes.values())

    @property
    def count(self) -> int:
        return len(self._sizes)

    def write(self, name: str, jpeg: bytes, sidecar: dict) -> Written:
        """Write one sample atomically, first evicting the oldest so the folder stays within the budget."""
        meta = json.dumps(sidecar, indent=1).encode()
        size = len(jpeg) + len(meta)
        if size > self.budget:
            raise StoreFull(f"a sample of {size} bytes is larger than the budget of {self.budget}")
        evicted = []
        if self.total + size > self.budget:
            self.rescan()  # `fab collect` may have taken some away
            while self.total + size > self.budget:
                evicted.append(self._evict_oldest())
        # Hidden temporary names (what `open` removes after a crash), each synced, then renamed: the JPEG first,
        # the sidecar last, when the sample exists.
        temporaries = [self.folder / f".{name}{suffix}.tmp" for suffix in (IMAGE, SIDECAR)]
        try:
            for temporary, data in zip(temporaries, (jpeg, meta)):
                _write_synced(temporary, data)
            for temporary, suffix in zip(temporaries, (IMAGE, SIDECAR)):
                os.replace(temporary, self.folder / (name + suffix))
        except BaseException:
            for path in (*temporaries, self.folder / (name + IMAGE)):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        fsync_directory(self.folder)  # both names at once: one directory sync a sample, not one a file
        self._sizes[name] = size
        self.total += size
        return Written(name, size, evicted)

    def _evict_oldest(self) -> str:
        name = min(self._sizes)
        for suffix in (SIDECAR, IMAGE):  # the sidecar first: the sample is gone at once, never half there
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / (name + suffix))
        self.total -= self._sizes.pop(name)
        return name


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def now_utc() -> datetime:
    return datetime.now(timezone.utc)

"""The model in use, and its hot reload when the file is replaced (a deploy's atomic rename or symlink switch)."""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from typing import TYPE_CHECKING, Callable

from device.errors import one_line

if TYPE_CHECKING:
    from device.classifier import Classifier

log = logging.getLogger("device.daemon")

Signature = tuple[int, int, int, int]


def file_signature(path: str | os.PathLike) -> Signature | None:
    """What changes when a file is replaced: device, inode, size, mtime (following symlinks); None if missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def file_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 of a regular file, read in blocks (None if it cannot be read, or is a device or pipe)."""
    digest = hashlib.sha256()
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:  # a FIFO must not block
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


class ModelWatcher:
    """Holds the current classifier and swaps in the file's new model between frames.

    A new file that fails to load is logged once and the old model kept; it is tried again only when
    the file changes again.
    """

    def __init__(self, path: str | os.PathLike, load: Callable[[str], Classifier], check_every_s: float = 1.0) -> None:
        self.path = os.fspath(path)
        self._load = load
        self._check_every_s = check_every_s
        self._signature = file_signature(self.path)
        self.classifier = load(self.path)
        self._rejected_signature: Signature | None = None
        # The file that failed to load, while it is the one at `path`: a deploy waiting for it can stop at once.
        self.rejected: dict | None = None
        self._checked = time.monotonic()
        self.reloads = 0
        self.failed_reloads = 0

    def reload_if_changed(self) -> bool:
        """Load the model again if its file changed since the last look; True if the model was swapped."""
        now = time.monotonic()
        if now - self._checked < self._check_every_s:
            return False
        self._checked = now
        signature = file_signature(self.path)
        if signature == self._signature:
            self.rejected = None  # the file at `path` is the model in use (again)
        if signature is None or signature in (self._signature, self._rejected_signature):
            return False
        try:
            classifier = self._load(self.path)
        except Exception as error:  # any failure to load must leave the running model in place
            self._rejected_signature = signature
            self.rejected = {"sha256": file_sha256(self.path), "reason": one_line(error)}
            self.failed_reloads += 1
            log.warning("model %s changed but does not load (%s); keeping sha256 %s",
                        self.path, one_line(error), self.classifier.model_sha256[:12])
            return False
        self.classifier, self._signature, self._rejected_signature, self.rejected = classifier, signature, None, None
        self.reloads += 1
        log.info("model %s reloaded: sha256 %s", self.path, classifier.model_sha256[:12])
        return True

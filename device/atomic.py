"""Write a file so that readers see the old one or the whole new one, never half of it."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", newline: str | None = None,
                 before_rename: Callable[[str], None] | None = None) -> Iterator[IO]:
    """Yield a temporary file beside `path`; on success fsync it and rename it over `path`.

    If the block raises (or the process is killed), `path` keeps its old content and the
    temporary file is removed (or, after a kill, left as a hidden `.NAME.*.tmp`).
    `before_rename(temporary)`, if given, sets what must be set on the complete file before anyone can
    read it (a publishing store: its mode and mtime).
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, mode, newline=newline) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        if before_rename is not None:
            before_rename(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def _mode_for(path: Path) -> int:
    """The old file's permissions, else what a plain open() would give under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_directory(directory: Path) -> None:
    """Make the names created or renamed in `directory` durable (a rename is on disk once its folder is synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

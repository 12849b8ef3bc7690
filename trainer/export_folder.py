"""The folder `trainer train` exports to: checked before any work, written beside, swapped in whole.

A run writes several files (model, labels, report, plots, the saved Keras model). Written one by one
into the folder, a Ctrl-C or a full disk halfway would leave a new model beside an old report, and
the previous model lost. So everything goes to a hidden folder beside the export first, and only a
complete export replaces the old one, by two renames that a Ctrl-C cannot separate.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Collection, Iterator

from device.errors import UserError

# An error writing these is the disk's, not a bug: one line, and the previous export stays.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


class ExportFolderError(UserError):
    """An export folder that cannot be written, or would lose the user's files or data."""


def check(folder: Path, export_files: Collection[str]) -> None:
    """Refuse, before any work, a folder the export could not replace without losing something:
    a file where the folder goes, or anything inside that is not a file a run writes."""
    if folder.exists() and not folder.is_dir():
        raise ExportFolderError(f"cannot write to --export-dir {folder}: it is a file, not a folder")
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if entry.name in export_files and (entry.is_symlink() or not entry.is_file()):
            raise ExportFolderError(f"--export-dir {folder}: {entry} is not a regular file; "
                                    "move it away or name another folder")
        if entry.name not in export_files:
            raise ExportFolderError(f"--export-dir {folder} holds {entry.name}, which is not part of an "
                                    "export and would be replaced with the folder: name a new or empty folder")


def check_outside(folder: Path, data_folder: Path) -> None:
    """An export inside the data folder would be trained on next time: its plots become photos of a label."""
    if folder.resolve().is_relative_to(data_folder.resolve()):
        raise ExportFolderError(f"--export-dir {folder} is inside the data folder {data_folder}: the next run "
                                "would train on the export's plots; name a folder outside it")


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside `folder` to write the export into; when the block ends
    without an error, it replaces `folder` (whose old content is then deleted). On an error or a
    Ctrl-C, `folder` is untouched and the staging folder and any parents this made are removed.
    A full or read-only disk is one `ExportFolderError` line."""
    created = [path for path in (folder.parent, *folder.parent.parents) if not path.exists()]
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    except OSError as error:
        _remove_empty(created)
        raise ExportFolderError(f"cannot write to --export-dir {folder}: {error.strerror or error}") from None
    try:
        yield staging
        replace_folder(staging, folder)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        raise ExportFolderError(f"cannot write the export to {folder}: {error.strerror or error}; "
                                "the previous export is unchanged") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)


def replace_folder(staged_folder: Path, folder: Path) -> None:
    """Put `staged_folder` where `folder` is, then delete the old one; a Ctrl-C between the renames
    waits until both are done, so `folder` is never missing."""
    with _interrupts_deferred():
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
            os.replace(folder, old / folder.name)
        os.replace(staged_folder, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a SIGINT that arrives inside the block and raise it as KeyboardInterrupt after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives KeyboardInterrupt
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)


def _remove_empty(created: list[Path]) -> None:
    for path in created:
        try:
            path.rmdir()
        except OSError:
            return

"""A store in a local directory, which any web server (nginx, a CDN's origin) can serve as static files."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

from device.atomic import atomic_write
from deploy.stores import StoreError, move_past_the_old_second


class LocalStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(urlsplit(url).path if url.startswith("file:") else url).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the store {self.root}: {error.strerror}") from None

    def _path(self, key: str) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def has(self, key: str) -> bool:
        return (self.root / key).is_file()

    def _atomic(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Write `key` beside its place, give it a later mtime than the file it replaces, rename it into place."""
        target = self._path(key)

        def publishable(temporary: str) -> None:
            os.chmod(temporary, 0o644)
            move_past_the_old_second(os.stat, os.utime, temporary, target)
        try:
            with atomic_write(target, "wb", before_rename=publishable) as file:
                write(file)
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror}") from None

    def put_file(self, key: str, path: Path) -> None:
        def copy(file: BinaryIO) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, file)
        self._atomic(key, copy)

    def put_bytes(self, key: str, data: bytes, *, cache: bool) -> None:
        self._atomic(key, lambda file: file.write(data))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass

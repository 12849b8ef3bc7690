"""A store in a local directory, which any web server (nginx, a CDN's origin) can serve as static files."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from device.atomic import atomic_write
from deploy.stores import StoreError


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

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, temporary)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {error.strerror}") from None

    def put_bytes(self, key: str, data: bytes, *, cache: bool) -> None:
        try:
            with atomic_write(self._path(key), "wb") as file:
                file.write(data)
            os.chmod(self.root / key, 0o644)
        except OSError as error:
            raise StoreError(f"cannot write {self.root / key}: {error.strerror}") from None

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass

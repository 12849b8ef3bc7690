"""A store on any SSH server's disk, over the deploy's own SSH connection (strict host keys, key auth);
a web server on that machine serves it. Files are written beside their place and renamed into it."""
from __future__ import annotations

import posixpath
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from deploy.inventory import Host
from deploy.stores import StoreError, move_past_the_old_second


class SftpStore:
    """`sftp://[user@]host[:port]/path`; `host` may name an inventory host, whose settings are then used."""

    def __init__(self, url: str, *, open_host=None, **connect_options) -> None:
        from deploy.ssh import connect, describe_ssh_error

        parts = urlsplit(url)
        if not parts.hostname or not parts.path.strip("/"):
            raise StoreError(f"{url}: give the host and the store's path, as in sftp://pi@web.local/srv/bloomkit")
        self.url, self.root = url, parts.path.rstrip("/")
        host = (open_host or (lambda name, **ssh: Host(name, hostname=name, **ssh)))(
            parts.hostname, user=parts.username, port=parts.port)
        self.conn = connect(host, **connect_options)
        try:
            self.sftp = self.conn.sftp()
        except Exception as error:  # noqa: BLE001 - paramiko has many ways to fail
            self.conn.close()
            raise StoreError(f"no SFTP on {parts.hostname}: {describe_ssh_error(error, self.conn)}") from None
        self._made: set[str] = set()

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def _mkdirs(self, directory: str) -> None:
        if directory in self._made:
            return
        parts, path = directory.strip("/").split("/"), ""
        for part in parts:
            path += "/" + part
            try:
                self.sftp.stat(path)
            except FileNotFoundError:
                self.sftp.mkdir(path)
        self._made.add(directory)

    def _atomic(self, key: str, write) -> None:
        target = self._path(key)
        temporary = f"{target}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self._mkdirs(posixpath.dirname(target))
            write(temporary)
            self.sftp.chmod(temporary, 0o644)
            move_past_the_old_second(self.sftp.stat, self.sftp.utime, temporary, target)
            self.sftp.posix_rename(temporary, target)
        except OSError as error:
            try:
                self.sftp.remove(temporary)
            except OSError:
                pass
            raise StoreError(f"cannot write {target} on the store: {error}") from None

    def has(self, key: str) -> bool:
        try:
            self.sftp.stat(self._path(key))
            return True
        except FileNotFoundError:
            return False

    def put_file(self, key: str, path: Path) -> None:
        self._atomic(key, lambda temporary: self.sftp.put(str(path), temporary))

    def put_bytes(self, key: str, data: bytes, *, cache: bool) -> None:
        def write(temporary: str) -> None:
            with self.sftp.open(temporary, "wb") as file:
                file.write(data)
        self._atomic(key, write)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            with self.sftp.open(self._path(key), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        self.sftp.close()
        self.conn.close()

"""Release stores: where `fab publish` writes and devices read. One protocol, one small module per backend.

Every store has the same layout (see docs/ota.md): `objects/<sha256>` for every file of every release,
written once and never changed, and `channels/<name>.json`, the signed channel manifest, the only thing
a publish rewrites. A web server, bucket or CDN in front of it serves both as static files.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import urlsplit

from deploy.errors import DeployError

OBJECTS = "objects"
CHANNELS = "channels"


class StoreError(DeployError):
    """The store cannot be reached or written."""

    stage = "store"


def object_key(sha256: str) -> str:
    return f"{OBJECTS}/{sha256}"


def channel_key(channel: str) -> str:
    return f"{CHANNELS}/{channel}.json"


def move_past_the_old_second(stat: Callable, utime: Callable, temporary: str, target: str | Path) -> None:
    """Before `temporary` is renamed over `target`, give it an mtime in a later second than `target`'s.

    Web servers derive a static file's validators from its mtime in whole seconds and its size (nginx's ETag
    is `"<mtime hex>-<size hex>"`, Last-Modified has one-second resolution), so a channel manifest re-signed
    within the same second at the same size would keep them, and a device's conditional GET would get 304 and
    miss it. Only the publisher knows the file changed, so it moves it on; before the rename, so the new
    content is never served with the old validators. Both times come from the store's own clock (the old
    file's and the new one's as written), so the publisher's clock does not matter. `stat` and `utime` are the
    store's (os or SFTP). S3 needs none of this: its ETag is the content's MD5, and a matching ETag is the only
    way it answers 304.
    """
    try:
        later = math.floor(stat(target).st_mtime) + 1
    except FileNotFoundError:
        return
    if stat(temporary).st_mtime < later:
        utime(temporary, (later, later))


class Store(Protocol):
    """What `fab publish` needs of a store; keys are `/`-separated paths under the store's root."""

    url: str

    def has(self, key: str) -> bool:
        """Whether `key` is already there (content-addressed objects are then never sent again)."""

    def put_file(self, key: str, path: Path) -> None:
        """Write a file so that readers see it whole or not at all."""

    def put_bytes(self, key: str, data: bytes, *, cache: bool) -> None:
        """Write small data (the channel manifest) atomically; `cache`: may a CDN keep it forever."""

    def get_bytes(self, key: str) -> bytes | None:
        """The data at `key`, None if there is none."""

    def close(self) -> None: ...


def open_store(url: str, **options) -> Store:
    """The store for `url`: a directory path, `s3://bucket/prefix` or `sftp://[user@]host[:port]/path`."""
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        from deploy.stores.s3 import S3Store
        return S3Store(url)
    if scheme == "sftp":
        from deploy.stores.sftp import SftpStore
        return SftpStore(url, **options)
    if scheme in ("", "file"):
        from deploy.stores.local import LocalStore
        return LocalStore(url)
    raise StoreError(f"unknown store {url!r}: give a directory, s3://bucket/prefix or sftp://host/path")

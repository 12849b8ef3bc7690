"""HTTP for the agent, stdlib only: a conditional GET of the channel, and file downloads that resume with
Range after a cut, stop at the size the manifest promises and check the sha256 the manifest names."""
from __future__ import annotations

import errno
import http.client
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from device.digest import sha256_file
from device.errors import UserError

TIMEOUT_S = 30
BLOCK = 1 << 16
ATTEMPTS = 5            # tries per file: the first, then resumes after cuts


class StoreDown(UserError):
    """The store did not answer, or answered with a server error: normal for a device, retried with backoff."""


class DownloadError(UserError):
    """A file that does not match what the signed manifest says: never installed."""


class DiskFull(UserError):
    """No room for the download: what was fetched so far is kept for a later try."""


@dataclass(frozen=True)
class Poll:
    """A channel poll's outcome: `data` None when unchanged (304)."""

    data: bytes | None
    etag: str | None
    last_modified: str | None
    bytes_received: int


def get_channel(url: str, etag: str | None, last_modified: str | None, limit: int = 1 << 20) -> Poll:
    """GET the channel manifest, conditional on what the last answer said; a manifest over `limit` is refused."""
    request = urllib.request.Request(url, headers={"User-Agent": "bloomkit-agent"})
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            data = response.read(limit + 1)
            if len(data) > limit:
                raise DownloadError(f"the channel manifest is over {limit >> 10} KB: refused")
            return Poll(data, response.headers.get("ETag"), response.headers.get("Last-Modified"), len(data))
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return Poll(None, etag, last_modified, 0)
        if error.code == 404:
            raise StoreDown(f"no channel at {url} (HTTP 404): not published yet?") from None
        raise StoreDown(f"the store answered HTTP {error.code} for {url}") from None
    except (OSError, http.client.HTTPException) as error:
        raise StoreDown(f"the store is unreachable ({url}): {_reason(error)}") from None


def download(url: str, destination: Path, sha256: str, size: int) -> int:
    """Fetch `url` into `destination` (exactly `size` bytes with that sha256), resuming from `destination.part`
    with Range after a cut; return the bytes received over the network. What arrived before a cut is kept
    for the next try, also across polls."""
    partial = destination.with_name(destination.name + ".part")
    received, got = 0, None
    for attempt in range(ATTEMPTS):
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have == size:
            break
        try:
            got = _fetch_range(url, partial, have, size)
        except StoreDown:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        received += got
        if got == 0:
            break                      # the store has no more: its file is shorter than the manifest says
    have = partial.stat().st_size if partial.exists() else 0
    if have != size:
        if got == 0:
            partial.unlink(missing_ok=True)
        raise DownloadError(f"{url.rsplit('/', 1)[-1][:12]}…: truncated, {have} of the {size} bytes the signed "
                            "manifest says")
    if sha256_file(partial) != sha256:
        partial.unlink()
        raise DownloadError(f"sha256 of {url.rsplit('/', 1)[-1][:12]}… differs from the signed manifest: "
                            "the store's file was altered or damaged")
    os.replace(partial, destination)
    return received


def _fetch_range(url: str, partial: Path, have: int, size: int) -> int:
    """Append bytes `have`..`size` of `url` to `partial`; a server that ignores Range starts it afresh."""
    request = urllib.request.Request(url, headers={"User-Agent": "bloomkit-agent"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            mode = "ab" if have and response.status == 206 else "wb"
            written = have if mode == "ab" else 0
            with open(partial, mode) as file:
                while True:
                    block = response.read(BLOCK)
                    if not block:
                        break
                    received += len(block)
                    written += len(block)
                    if written > size:
                        file.truncate(0)
                        raise DownloadError(f"{url.rsplit('/', 1)[-1][:12]}…: oversized, more than the {size} "
                                            "bytes the signed manifest says")
                    file.write(block)
    except urllib.error.HTTPError as error:
        if error.code == 416:            # asked for past the end of the store's file
            return received
        if error.code == 404:
            raise DownloadError(f"{url} is missing from the store (HTTP 404)") from None
        raise StoreDown(f"the store answered HTTP {error.code} for {url}") from None
    except (OSError, http.client.HTTPException) as error:   # a cut: what arrived stays for the next Range request
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"disk full while downloading into {partial.parent}") from None
        if received == 0:
            raise StoreDown(f"the store is unreachable ({url}): {_reason(error)}") from None
    return received


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, socket.timeout):
        return "timed out"
    return " ".join(str(reason).split()) or type(reason).__name__

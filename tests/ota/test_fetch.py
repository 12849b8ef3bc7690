"""The agent's downloads from real nginx: a cut mid-file resumes with Range and fetches only the rest; a
file that is longer, shorter or different from what the signed manifest says is refused and not kept."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from device.agent import fetch
from testkit.webservers import CuttingProxy

SIZE = 8 << 20


@pytest.fixture
def served(tmp_path, nginx):
    root = tmp_path / "www"
    (root / "objects").mkdir(parents=True)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    (root / "objects" / digest).write_bytes(data)
    return nginx(root), root, digest, data


def test_a_download_cut_at_half_resumes_with_range_and_fetches_only_the_rest(served, tmp_path):
    server, _root, digest, data = served
    proxy = CuttingProxy(server.port, cut_after=SIZE // 2, cuts=1)
    try:
        received = fetch.download(f"{proxy.url}/objects/{digest}", tmp_path / "file", digest, SIZE)
    finally:
        proxy.close()
    assert (tmp_path / "file").read_bytes() == data
    assert len(proxy.requests) == 2 and b"Range: bytes=" in proxy.requests[1]
    resumed_from = int(proxy.requests[1].split(b"Range: bytes=")[1].split(b"-")[0])
    assert SIZE // 2 - 1024 <= resumed_from < SIZE // 2
    assert received <= SIZE + 1024                     # the first half once, the rest once: nothing twice
    assert proxy.passed - SIZE < 2048                  # on the wire: the file plus two responses' headers


@pytest.mark.parametrize("tamper, message", [
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "sha256 .* differs from the signed manifest"),
    (lambda data: data + b"x" * 100_000, "oversized"),
    (lambda data: data[: len(data) // 3], "truncated"),
])
def test_a_file_that_differs_from_the_manifest_is_refused(served, tmp_path, tamper, message):
    server, root, digest, data = served
    (root / "objects" / digest).write_bytes(tamper(data))
    with pytest.raises(fetch.DownloadError, match=message):
        fetch.download(f"{server.url}/objects/{digest}", tmp_path / "file", digest, SIZE)
    assert not (tmp_path / "file").exists()


def test_a_conditional_get_of_an_unchanged_channel_is_a_304(tmp_path, nginx):
    root = tmp_path / "www"
    (root / "channels").mkdir(parents=True)
    (root / "channels" / "stable.json").write_text('{"payload": "{}", "signatures": []}')
    server = nginx(root)
    first = fetch.get_channel(f"{server.url}/channels/stable.json", None, None)
    assert first.data and first.etag and first.last_modified
    again = fetch.get_channel(f"{server.url}/channels/stable.json", first.etag, first.last_modified)
    assert again.data is None and again.bytes_received == 0
    log = tmp_path / "nginx-0" / "access.log"
    deadline = time.monotonic() + 10          # nginx logs a request just after answering it
    while len(log.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line.split('"')[2].split()[0] for line in log.read_text().splitlines()] == ["200", "304"]


def test_a_store_that_is_down_is_reported_as_such(tmp_path):
    from tests.conftest import free_port

    with pytest.raises(fetch.StoreDown, match="unreachable"):
        fetch.get_channel(f"http://127.0.0.1:{free_port()}/channels/stable.json", None, None)

"""Fixtures for the OTA tests: a signing key, a release store written by `fab publish`'s code, nginx serving
it, and the deploy tests' build cache, photos, models and sshd lab (reused, not repeated)."""
from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import builder, client_key, lab, models, photos, source_snapshot  # noqa: F401
from tests.ota.servers import start_mosquitto, start_nginx

# What this machine's loopback "devices" run: the build `fab publish --target` makes for them.
THIS_TARGET = f"{platform.machine()}-cp{sys.version_info[0]}{sys.version_info[1]}-glibc2.36"


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    from deploy.keys import keygen

    path = tmp_path_factory.mktemp("keys") / "signing-key"
    keygen(path)
    return path


@pytest.fixture(scope="session")
def trusted(signing_key) -> dict[str, bytes]:
    from device.agent.manifest import key_id, load_public_key

    raw = load_public_key(Path(str(signing_key) + ".pub").read_text())
    return {key_id(raw): raw}


@pytest.fixture
def nginx(tmp_path):
    """Start nginx on a store folder: `nginx(root)` → the server (stopped after the test)."""
    started = []

    def start(root: Path):
        server = start_nginx(root, tmp_path / f"nginx-{len(started)}")
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mosquitto(tmp_path):
    server = start_mosquitto(tmp_path / "mosquitto")
    yield server
    server.stop()

"""Fixtures for the OTA tests: a signing key, a release store written by `fab publish`'s code, nginx serving
it, and the deploy tests' build cache, photos, models and sshd lab (reused, not repeated)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import builder, client_key, lab, models, photos, source_snapshot  # noqa: F401
from tests.conftest import require
from testkit.agentlab import THIS_TARGET  # noqa: F401 - the tests' name for it
from testkit.webservers import MOSQUITTO, NGINX, start_mosquitto, start_nginx


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

    require(NGINX.exists(), "nginx not installed (/usr/sbin/nginx): apt-get install nginx")

    def start(root: Path):
        server = start_nginx(root, tmp_path / f"nginx-{len(started)}")
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mosquitto(tmp_path):
    require(MOSQUITTO.exists(), "mosquitto not installed (/usr/sbin/mosquitto): apt-get install mosquitto")
    server = start_mosquitto(tmp_path / "mosquitto")
    yield server
    server.stop()

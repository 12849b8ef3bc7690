"""`fab deploy` with MQTT credentials: into the host's data directory (0600, outside the releases), never
shown, read by the deployed daemon, which then reaches a real password-protected Mosquitto."""
from __future__ import annotations

import dataclasses
import stat
import time
from pathlib import Path

import pytest

from deploy.errors import InventoryError
from deploy.inventory import load_inventory
from deploy.jobs.deploy import deploy_fleet
from deploy.report import OK, SKIPPED
from tests.conftest import require
from testkit.mosquitto import BINARY as MOSQUITTO
from testkit.mosquitto import Mosquitto, retained

PASSWORD = "gr33n-thumb-s3cret"
HEALTH_TIMEOUT = 180.0  # a shared CI machine under load starts a daemon slowly


def credentials_file(path: Path, password: str = PASSWORD, mode: int = 0o600) -> Path:
    path.write_text(f"pi:{password}\n")
    path.chmod(mode)
    return path


def test_the_inventory_refuses_credentials_others_can_read(tmp_path):
    credentials_file(tmp_path / "mqtt-credentials", mode=0o640)
    (tmp_path / "fleet.yaml").write_text("hosts:\n  pi1:\n    hostname: pi1.lan\n"
                                         "    daemon:\n      mqtt_credentials: mqtt-credentials\n")
    with pytest.raises(InventoryError, match=r"host pi1: daemon mqtt_credentials: .*readable by others \(mode 0640\)"):
        load_inventory(tmp_path / "fleet.yaml")


@pytest.mark.slow
def test_deploy_installs_the_credentials_privately_and_the_daemon_uses_them(lab, builder, models, tmp_path,
                                                                             capfd):
    require(Path(MOSQUITTO).exists(), "mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path, password=("pi", PASSWORD))
    try:
        local = credentials_file(tmp_path / "local-mqtt-credentials")
        server = lab.start_server("pi1")
        host = lab.host("pi1", server)
        daemon = dataclasses.replace(host.daemon, mqtt_credentials=local,
                                     args=host.daemon.args + ("--mqtt", broker.url, "--device-id", "deployed"))
        host = dataclasses.replace(host, daemon=daemon)

        [result] = deploy_fleet([host], models.first, builder=builder, health_timeout=HEALTH_TIMEOUT)
        assert result.status == OK, result.reason
        root = Path(host.root)
        secrets = root / "data" / "secrets"
        installed = secrets / "mqtt-credentials"
        assert installed.read_text() == local.read_text()
        assert stat.S_IMODE(installed.stat().st_mode) == 0o600 and stat.S_IMODE(secrets.stat().st_mode) == 0o700
        assert not list(root.glob(".*.upload"))  # the upload was moved into place
        for path in (root / "releases").rglob("*"):  # in no release, under no name
            if path.is_file() and not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), path
        availability = "bloomkit/deployed/availability"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while retained(broker.port, availability, 0.5, credentials=("pi", PASSWORD)).get(availability) != b"online":
            assert time.monotonic() < deadline, "the daemon did not connect"  # it finds the file through --data-dir

        # New credentials alone: the same release, restarted so that the daemon reads them.
        credentials_file(local, "n3w-" + PASSWORD)
        broker.stop()
        broker = Mosquitto(tmp_path, password=("pi", "n3w-" + PASSWORD), port=broker.port)
        [again] = deploy_fleet([host], models.first, builder=builder, health_timeout=HEALTH_TIMEOUT)
        assert again.status == OK and "new MQTT credentials" in again.reason
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while retained(broker.port, availability, 0.5, credentials=("pi", "n3w-" + PASSWORD)).get(availability) \
                != b"online":
            assert time.monotonic() < deadline, "the restarted daemon did not connect with the new credentials"
        [unchanged] = deploy_fleet([host], models.first, builder=builder, health_timeout=HEALTH_TIMEOUT)
        assert unchanged.status == SKIPPED

        output = capfd.readouterr()
        shown = output.out + output.err
        assert "MQTT credentials installed in the data directory" in shown and "MQTT credentials unchanged" in shown
        assert PASSWORD not in shown
    finally:
        broker.stop()

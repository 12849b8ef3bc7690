"""The service unit: hardened as the brief asks, and clean under `systemd-analyze verify`."""
from __future__ import annotations

import sys

from tests.conftest import REPO, systemd_analyze_verify, unit_directives

UNIT = REPO / "device" / "systemd" / "bloomkit-device.service"


def filters(text: str) -> list[str]:
    """Every SystemCallFilter= line (configparser keeps only the last of a repeated key)."""
    prefix = "SystemCallFilter="
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def test_the_unit_is_hardened_without_hiding_the_camera():
    service = unit_directives(UNIT)
    assert service["Restart"] == "on-failure"
    assert service["User"] == "bloomkit" and service["SupplementaryGroups"] == "video"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups",
                "RemoveIPC", "PrivateMounts"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "bloomkit", "only the data directory is writable"
    assert "ReadWritePaths" not in service, "StateDirectory= already makes it writable"
    assert set(filters(UNIT.read_text())) == {"@system-service", "~@privileged @resources"}
    assert service["CapabilityBoundingSet"] == ""
    assert "PrivateDevices" not in service and "DevicePolicy" not in service, "the camera is a device"


def test_systemd_analyze_verify_passes(tmp_path):
    # The template's ExecStart is on the Pi; point it at a program that exists here.
    text = UNIT.read_text()
    lines = [f"ExecStart={sys.executable} -m device.cli run" if line.startswith("ExecStart=") else line
             for line in text.splitlines()]
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    systemd_analyze_verify(str(copy))

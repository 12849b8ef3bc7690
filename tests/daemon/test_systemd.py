"""The service unit: hardened as the brief asks, and clean under `systemd-analyze verify`."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

from tests.conftest import REPO, require

UNIT = REPO / "device" / "systemd" / "bloomkit-device.service"


def directives() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(UNIT)
    return dict(parser["Service"])


def filters(text: str) -> list[str]:
    """Every SystemCallFilter= line (configparser keeps only the last of a repeated key)."""
    prefix = "SystemCallFilter="
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def test_the_unit_is_hardened_without_hiding_the_camera():
    service = directives()
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
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    # The template's ExecStart is on the Pi; point it at a program that exists here.
    text = UNIT.read_text()
    lines = [f"ExecStart={sys.executable} -m device.cli run" if line.startswith("ExecStart=") else line
             for line in text.splitlines()]
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "verify warns about unknown keys or bad values only on stderr"

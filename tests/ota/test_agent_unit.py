"""The agent's systemd unit, which `fab deploy` installs where the host runs systemd: hardened, running the
launcher `install.py agent-install` writes, writable only where it installs, clean under `systemd-analyze verify`."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

from tests.conftest import REPO, require

UNIT = REPO / "device" / "systemd" / "bloomkit-agent.service"


def directives() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(UNIT)
    return dict(parser["Service"])


def test_the_agent_unit_is_hardened_and_runs_the_launcher_fab_deploy_writes():
    service = directives()
    assert service["ExecStart"] == "/opt/bloomkit/agent/run-agent" and service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == ["/opt/bloomkit", "/etc/systemd/system"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictNamespaces", "RestrictSUIDSGID", "LockPersonality"):
        assert service[key] == "yes", key
    assert service["SystemCallFilter"] == "@system-service"
    assert "EnvironmentFile" not in service, "the settings are in <root>/agent/, read by the launcher"


def test_systemd_analyze_verify_passes_on_the_agent_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    lines = []
    for line in UNIT.read_text().splitlines():      # the Pi's paths, pointed at what exists here
        if line.startswith("ExecStart="):
            line = f"ExecStart={sys.executable} -m device.cli agent --help"
        elif line.startswith("ReadWritePaths="):
            line = f"ReadWritePaths={tmp_path}"
        lines.append(line)
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stderr

"""The agent's systemd unit: clean under `systemd-analyze verify`, writable only where it installs."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

from tests.conftest import REPO, require

UNIT = REPO / "device" / "systemd" / "bloomkit-agent.service"


def test_the_agent_unit_verifies_and_writes_only_the_deploy_root_and_units(tmp_path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(UNIT)
    service = dict(parser["Service"])
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["ReadWritePaths"].split() == ["/opt/bloomkit", "/etc/systemd/system"]
    assert "$AGENT_ARGS" in service["ExecStart"] and service["Restart"] == "on-failure"
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    env = tmp_path / "agent.env"
    env.write_text('AGENT_ARGS="--channel http://127.0.0.1/channels/stable.json"\n')
    lines = []
    for line in UNIT.read_text().splitlines():      # the Pi's paths, pointed at what exists here
        if line.startswith("ExecStart="):
            line = f"ExecStart={sys.executable} -m device.cli agent $AGENT_ARGS"
        elif line.startswith("EnvironmentFile="):
            line = f"EnvironmentFile={env}"
        elif line.startswith("ReadWritePaths="):
            line = f"ReadWritePaths={tmp_path}"
        lines.append(line)
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stderr

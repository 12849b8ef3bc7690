"""The agent's systemd unit, which `fab deploy` installs where the host runs systemd: hardened, running the
launcher `install.py agent-install` writes, writable only where it installs, clean under `systemd-analyze verify`."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_the_unit_with_the_drop_in_fab_deploy_writes_verifies_for_another_root(tmp_path, monkeypatch):
    """What `install.py agent-install` puts on a systemd host whose root is not /opt/bloomkit: the unit, a
    drop-in starting that root's launcher (the one it writes) with that root writable, read by systemd as one."""
    import importlib

    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    monkeypatch.syspath_prepend(str(REPO / "deploy" / "host"))
    install = importlib.import_module("install")
    layout = install.Layout(str(tmp_path / "srv" / "bloomkit"))
    launcher = Path(layout.agent) / "run-agent"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(install.agent_launcher(layout))
    launcher.chmod(0o755)
    units = tmp_path / "units"
    (units / f"{UNIT.name}.d").mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT.name)
    (units / f"{UNIT.name}.d" / "bloomkit-deploy.conf").write_text(install.dropin_text(install.agent_override(layout)))
    result = subprocess.run([analyze, "verify", UNIT.name], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stderr
    shown = subprocess.run(["sh", "-n", str(launcher)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"root={layout.root}\n" in launcher.read_text()

"""The agent's systemd unit, which `fab deploy` installs where the host runs systemd: hardened, running the
launcher `install.py agent-install` writes, writable only where it installs, clean under `systemd-analyze verify`;
and the daemon's unit, which gives the daemon no write access to the agent's settings or state."""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, systemd_analyze_verify, unit_directives

import pytest

from deploy.host.layout import AGENT_LAUNCHER, AGENT_STATE, Layout
from device.agent import agent
from device.agent.state import STATE_DIR

UNIT = REPO / "device" / "systemd" / "bloomkit-agent.service"
DAEMON_UNIT = REPO / "device" / "systemd" / "bloomkit-device.service"


@pytest.fixture
def install(monkeypatch):
    """deploy/host/install.py, imported as it runs on the host (beside layout.py)."""
    monkeypatch.syspath_prepend(str(REPO / "deploy" / "host"))
    return importlib.import_module("install")


def writable_paths(*texts: str) -> list[str]:
    """ReadWritePaths= as systemd reads a unit then its drop-ins: each adds its paths, an empty one resets."""
    paths: list[str] = []
    for text in texts:
        for line in text.splitlines():
            if line.startswith("ReadWritePaths="):
                value = line.split("=", 1)[1].split()
                paths = paths + value if value else []
    return paths


def under(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def test_the_daemon_cannot_write_the_agents_settings_or_state_but_the_agent_can(install):
    """Under systemd the daemon runs as its own user under ProtectSystem=strict, writing only what its unit
    and fab deploy's drop-in name: the data directory. What the agent trusts (agent/) and what it has seen
    (agent-state/state.json: the highest release and serial, its guard against downgrades and replays) are
    outside it, so a compromised daemon cannot make the agent install an older signed release."""
    layout = install.Layout("/srv/bloomkit")
    daemon = DAEMON_UNIT.read_text()
    assert "\nProtectSystem=strict\n" in daemon and "\nUser=bloomkit\n" in daemon
    daemon_writes = writable_paths(daemon, install.dropin_text(install.daemon_override(layout)))
    assert daemon_writes == [layout.data]
    state, settings = f"{layout.root}/{STATE_DIR}/state.json", f"{layout.agent}/trusted-0.pub"
    assert not under(state, daemon_writes) and not under(settings, daemon_writes)
    agent_writes = writable_paths(UNIT.read_text(), install.dropin_text(install.agent_override(layout)))
    assert under(state, agent_writes)


def test_the_agent_unit_is_hardened_and_runs_the_launcher_fab_deploy_writes():
    service = unit_directives(UNIT)
    assert service["ExecStart"] == "/opt/bloomkit/agent/run-agent" and service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == ["/opt/bloomkit", "/etc/systemd/system"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictNamespaces", "RestrictSUIDSGID", "LockPersonality"):
        assert service[key] == "yes", key
    assert service["SystemCallFilter"] == "@system-service"
    assert "EnvironmentFile" not in service, "the settings are in <root>/agent/, read by the launcher"
    unit_section = UNIT.read_text().split("[Service]")[0]
    assert "\nStartLimitIntervalSec=0\n" in unit_section, "systemd never stops the starts the launcher's trial counts"


def test_systemd_analyze_verify_passes_on_the_agent_unit(tmp_path):
    lines = []
    for line in UNIT.read_text().splitlines():      # the Pi's paths, pointed at what exists here
        if line.startswith("ExecStart="):
            line = f"ExecStart={sys.executable} -m device.cli agent --help"
        elif line.startswith("ReadWritePaths="):
            line = f"ReadWritePaths={tmp_path}"
        lines.append(line)
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    systemd_analyze_verify(str(copy))


def test_the_unit_with_the_drop_in_fab_deploy_writes_verifies_for_another_root(tmp_path, install):
    """What `install.py agent-install` puts on a systemd host whose root is not /opt/bloomkit: the unit, a
    drop-in starting that root's launcher (the one it writes) with that root writable, read by systemd as one."""
    layout = install.Layout(str(tmp_path / "srv" / "bloomkit"))
    launcher = Path(layout.agent) / "run-agent"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(install.agent_launcher(layout))
    launcher.chmod(0o755)
    units = tmp_path / "units"
    (units / f"{UNIT.name}.d").mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT.name)
    (units / f"{UNIT.name}.d" / "bloomkit-deploy.conf").write_text(install.dropin_text(install.agent_override(layout)))
    systemd_analyze_verify(UNIT.name, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    shown = subprocess.run(["sh", "-n", str(launcher)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"root={layout.root}\n" in launcher.read_text()


def test_the_agent_and_the_hosts_layout_agree_on_the_lock_the_launcher_and_the_state():
    """device/ cannot import deploy/host (the host's side is stdlib scripts): the names are written twice."""
    layout = Layout("/srv/bloomkit")
    assert f"{layout.root}/{agent.DEPLOY_LOCK}" == layout.lock
    assert f"{layout.root}/{agent.LAUNCHER}" == f"{layout.agent}/{AGENT_LAUNCHER}"
    assert AGENT_STATE == STATE_DIR, "where its state is"

"""`fab deploy` installs the update agent from the inventory's `agent:` section, over a real sshd, as a second
program of the pidfile manager: the agent polls a store `fab publish` wrote (served by real nginx) and installs
the newer release; a redeploy without changes leaves it running; without the section it is stopped and
removed. The systemd unit that runs it where there is systemd is checked by `systemd-analyze verify`."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.build import sha256_file
from tests.conftest import REPO, require
from testkit.agentlab import publish, read_status, serving, set_rollout
from testkit.sshlab import run_fab

AGENT_UNIT = REPO / "device" / "systemd" / "bloomkit-agent.service"


def agent_pid(root: Path) -> int | None:
    """The pid of the host's agent if the pidfile manager runs one."""
    try:
        pid = int((root / "run" / "agent.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def wait_for(condition, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


@pytest.mark.slow
def test_fab_deploy_installs_keeps_and_removes_the_agent(tmp_path, lab, builder, models, signing_key, nginx):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key, percent=0)      # release 1, for no device yet
    server = nginx(store)
    host = lab.host("pi1", lab.start_server("pi1"))
    root = Path(host.root)
    inventory = lab.inventory([host])
    settings = yaml.safe_load(inventory.read_text())
    settings["hosts"]["pi1"]["agent"] = {"channel": f"{server.url}/channels/stable.json",
                                         "trust": f"{signing_key}.pub", "interval": 1}
    inventory.write_text(yaml.safe_dump(settings))
    deploy = ("deploy", "--model", str(models.first), "--inventory", str(inventory))

    first = run_fab(builder, *deploy)
    assert first.returncode == 0, first.stdout + first.stderr
    pid = agent_pid(root)
    assert pid is not None, (root / "logs" / "agent.log").read_text()
    assert sorted(p.name for p in (root / "agent").iterdir()) == ["agent.args", "run-agent", "trusted-0.pub"]
    assert (root / "agent" / "trusted-0.pub").read_bytes() == Path(f"{signing_key}.pub").read_bytes()
    assert (root / "data" / "daemon.args").read_text().split("\n")[:2] == ["--http", host.daemon.http]
    assert wait_for(lambda: read_status(root).get("state") == "waiting"), read_status(root)  # polled: 0% rollout

    again = run_fab(builder, *deploy)
    assert again.returncode == 0 and "SKIPPED" in again.stdout, again.stdout + again.stderr
    assert agent_pid(root) == pid

    set_rollout(store, signing_key, 100)
    assert wait_for(lambda: read_status(root).get("state") in ("installed", "idle")
                    and serving(host.daemon.http) == sha256_file(models.second)), read_status(root)
    assert read_status(root)["release"] == 1 and agent_pid(root) == pid
    status = run_fab(builder, "status", "--inventory", str(inventory))
    assert status.returncode == 0 and "agent: release 1" in status.stdout, status.stdout + status.stderr

    del settings["hosts"]["pi1"]["agent"]
    inventory.write_text(yaml.safe_dump(settings))
    removed = run_fab(builder, *deploy)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert agent_pid(root) is None and not (root / "agent").exists() and not (root / "data" / "daemon.args").exists()
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30)
    assert serving(host.daemon.http) == sha256_file(models.first)


def unit_directives() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(AGENT_UNIT)
    return dict(parser["Service"])


def test_the_agent_unit_is_hardened_and_runs_the_launcher_fab_deploy_writes():
    service = unit_directives()
    assert service["ExecStart"] == "/opt/bloomkit/agent/run-agent" and service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert set(service["ReadWritePaths"].split()) == {"/opt/bloomkit", "/etc/systemd/system"}
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictNamespaces", "RestrictSUIDSGID", "LockPersonality"):
        assert service[key] == "yes", key
    assert service["SystemCallFilter"] == "@system-service"
    assert "EnvironmentFile" not in service, "the settings are in <root>/agent/, read by the launcher"


def test_systemd_analyze_verify_passes_on_the_agent_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    # The unit's ExecStart is on the Pi; point it at a program that exists here.
    lines = [f"ExecStart={sys.executable} -m device.cli agent --help" if line.startswith("ExecStart=") else line
             for line in AGENT_UNIT.read_text().splitlines()]
    copy = tmp_path / AGENT_UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "verify warns about unknown keys or bad values only on stderr"

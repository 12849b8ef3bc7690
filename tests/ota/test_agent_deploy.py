"""`fab deploy` installs the update agent from the inventory's `agent:` section, over a real sshd, as a second
program of the pidfile manager: the agent polls a store `fab publish` wrote (served by real nginx) and installs
the newer release, keeping its state out of the daemon's data directory; a release with a new device package
makes it go on with that release's code; a redeploy without changes leaves it running; without the section
it is stopped and removed, its state kept (the systemd unit that runs it where there is systemd:
test_agent_unit.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from deploy.build import sha256_file
from device.agent.state import STATE_DIR
from testkit.agentlab import THIS_TARGET, changed_package, publish, read_status, serving
from testkit.processes import wait_until
from testkit.sshlab import run_fab


def agent_pid(root: Path) -> int | None:
    """The pid of the host's agent if the pidfile manager runs one."""
    try:
        pid = int((root / "run" / "agent.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def wait_for(condition, timeout: float = 180.0) -> bool:
    return wait_until(condition, timeout, step=0.5)


pytestmark = pytest.mark.slow


def test_fab_deploy_installs_keeps_restarts_and_removes_the_agent(tmp_path, lab, builder, source_snapshot, models,
                                                                  signing_key, nginx):
    store = tmp_path / "store"
    published = run_fab(builder, "publish", "--model", str(models.second), "--store", str(store), "--key",
                        str(signing_key), "--target", THIS_TARGET, "--rollout", "0%")   # release 1, for no device yet
    assert published.returncode == 0, published.stderr
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
    pushed = os.path.basename(os.readlink(root / "current"))
    assert sorted(p.name for p in (root / "agent").iterdir()) == ["agent.args", "agent_trial.py", "run-agent",
                                                                  "trusted-0.pub"]
    assert (root / "agent" / "trusted-0.pub").read_bytes() == Path(f"{signing_key}.pub").read_bytes()
    assert (root / "data" / "daemon.args").read_text().split("\n")[:2] == ["--http", host.daemon.http]
    assert wait_for(lambda: read_status(root).get("state") == "waiting"), read_status(root)  # polled: 0% rollout

    again = run_fab(builder, *deploy)
    assert again.returncode == 0 and "SKIPPED" in again.stdout, again.stdout + again.stderr
    assert agent_pid(root) == pid

    widened = run_fab(builder, "publish", "--store", str(store), "--key", str(signing_key), "--rollout", "100%",
                      "--force")
    assert widened.returncode == 0, widened.stderr
    assert wait_for(lambda: read_status(root).get("state") in ("installed", "idle")
                    and serving(host.daemon.http) == sha256_file(models.second)), read_status(root)
    assert read_status(root)["release"] == 1 and agent_pid(root) == pid
    assert read_status(root)["agent_version"] == pushed, "the same device package: the agent goes on as it is"
    assert "restarts on its code" not in (root / "logs" / "agent.log").read_text()
    state = json.loads((root / STATE_DIR / "state.json").read_text())
    assert (state["release"], state["version"]) == (1, os.path.basename(os.readlink(root / "current")))
    assert not list((root / "data").rglob("*.json")), "nothing of the agent's in the daemon's data directory"

    newer = publish(store, models.second, changed_package(source_snapshot, builder, tmp_path / "newer"), signing_key)
    assert wait_for(lambda: read_status(root).get("release") == 2 and read_status(root).get("health") == "ok"
                    and read_status(root).get("agent_version") == newer.version), read_status(root)
    assert os.readlink(root / "current").endswith(newer.version)
    assert agent_pid(root) == pid, "the agent execs its launcher: same process, same supervisor"
    assert f"/releases/{newer.version}/venv/bin/python -m device.cli agent" in command_line(pid)
    checked = read_status(root)["last_check"]
    assert wait_for(lambda: read_status(root)["last_check"] != checked, 30), "it keeps polling"
    assert read_status(root)["state"] == "idle" and agent_pid(root) == pid
    log = (root / "logs" / "agent.log").read_text()
    assert log.count("the agent restarts on its code") == 1, log

    status = run_fab(builder, "status", "--inventory", str(inventory))
    assert status.returncode == 0 and "agent: release 2" in status.stdout, status.stdout + status.stderr

    del settings["hosts"]["pi1"]["agent"]
    inventory.write_text(yaml.safe_dump(settings))
    removed = run_fab(builder, *deploy)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert agent_pid(root) is None and not (root / "agent").exists() and not (root / "data" / "daemon.args").exists()
    assert json.loads((root / STATE_DIR / "state.json").read_text())["release"] == 2, "what it has seen is kept"
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30)
    assert serving(host.daemon.http) == sha256_file(models.first)


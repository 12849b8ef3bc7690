"""A release whose new agent code crashes at start never strands a device that only pulls: the agent installed
as `fab deploy` installs it (install.py agent-install, the pidfile manager's second program) pulls a release
whose agent raises at import, its launcher counts the starts that complete no poll, and after the third the
device goes back to the release whose agent proved itself (daemon and agent together), refuses the bad release
from then on and says why; a release whose new agent is fine proves itself and stays. Real nginx serving a store
`fab publish`'s code wrote, real processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.build import sha256_file
from deploy.host.layout import Layout
from deploy.inventory import AgentOptions
from deploy.jobs.deploy import deploy_fleet
from device.agent.state import PROVEN, STATE_DIR, TRIAL
from tests.ota.test_agent_deploy import agent_pid, command_line, wait_for
from tests.ota.test_agent_refuses import device  # noqa: F401 - a device first deployed by push over real sshd
from testkit.agentlab import changed_package, publish, read_status, serving

pytestmark = pytest.mark.slow


def install_agent(host, channel_url: str, public_key: Path) -> None:
    """What `fab deploy` does on the host for an inventory's `agent:` section (an upload, then the current
    release's install.py agent-install), run here without SSH: the agent starts under the pidfile manager."""
    root = Path(host.root)
    upload = root / ".agent.upload"
    upload.mkdir()
    agent = ["--channel", channel_url, "--device-id", host.name, "--daemon-http", host.daemon.http,
             "--interval", "1", "--python", host.python]
    daemon = ["--http", host.daemon.http, "--source", host.daemon.source, *host.daemon.args]
    (upload / "agent.args").write_text("".join(a + "\n" for a in agent))
    (upload / "daemon.args").write_text("".join(a + "\n" for a in daemon))
    shutil.copy(public_key, upload / "trusted-0.pub")
    script = Layout(str(root)).scripts(str(root / "current")) + "/install.py"
    done = subprocess.run([host.python, script, "--root", str(root), "--service", "pidfile", "agent-install",
                           str(upload)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def objects_fetched(access_log: Path) -> list[str]:
    return [line.split('"')[1].split()[1] for line in access_log.read_text().splitlines()
            if "/objects/" in line.split('"')[1]]


def polls(root: Path, count: int) -> bool:
    """Whether the agent reports `count` more checks (its status' last_check changes each second's poll)."""
    for _ in range(count):
        checked = read_status(root).get("last_check")
        if not wait_for(lambda: read_status(root).get("last_check") != checked, 30):
            return False
    return True


def test_a_release_whose_agent_crashes_at_start_goes_back_and_one_whose_agent_is_fine_stays(
        device, tmp_path, source_snapshot, nginx, models, builder, signing_key):
    root = Path(device.root)
    shutil.rmtree(root / STATE_DIR, ignore_errors=True)
    pushed = os.path.basename(os.readlink(root / "current"))
    store = tmp_path / "store"
    good = publish(store, models.second, builder, signing_key)          # release 1: the pushed agent's code
    server = nginx(store)
    install_agent(device, f"{server.url}/channels/stable.json", Path(f"{signing_key}.pub"))
    try:
        assert wait_for(lambda: read_status(root).get("release") == 1 and read_status(root).get("state") == "idle"
                        and serving(device.daemon.http) == sha256_file(models.second)), read_status(root)
        assert read_status(root)["agent_version"] == pushed, "release 1 has the same device package: no restart"
        proven = json.loads((root / STATE_DIR / PROVEN).read_text())
        assert proven == {"version": good.version, "release": 1}, "the agent's code, release 1's, has polled"

        # Release 2: a new agent that raises at import (the daemon is fine: it never imports device.agent).
        bad_builder = changed_package(source_snapshot, builder, tmp_path / "bad",
                                      'raise RuntimeError("a broken agent")')
        bad = publish(store, models.first, bad_builder, signing_key)
        assert wait_for(lambda: read_status(root).get("state") == "failed"
                        and read_status(root).get("failed_release") == 2, 240), read_status(root)
        status = read_status(root)
        assert os.readlink(root / "current") == f"releases/{good.version}", "back on release 1"
        assert (status["release"], status["version"], status["health"]) == (1, good.version, "ok")
        assert status["agent_version"] == good.version, "the agent that proved itself runs again"
        assert "did not prove itself (3 starts without completing a poll)" in status["last_error"]
        assert "log: RuntimeError: a broken agent" in status["last_error"]
        assert "waiting for a newer one" in status["last_error"]
        assert serving(device.daemon.http) == sha256_file(models.second)
        assert (root / "releases" / bad.version / ".failed").is_file()
        pid = agent_pid(root)
        assert pid is not None and f"/releases/{good.version}/venv/bin/python -m device.cli agent" in command_line(pid)
        log = (root / "logs" / "agent.log").read_text()
        assert log.count(f"release {bad.version}'s agent is on trial: start") == 3, log
        assert f"Going back to release {good.version}" in log
        assert log.splitlines().count("RuntimeError: a broken agent") == 3, "three starts, then no more"
        assert not (root / STATE_DIR / TRIAL).exists()

        fetched = objects_fetched(tmp_path / "nginx-0" / "access.log")
        assert polls(root, 3), read_status(root)                           # polling again, and refusing
        assert objects_fetched(tmp_path / "nginx-0" / "access.log") == fetched, "release 2 not downloaded again"
        assert os.readlink(root / "current") == f"releases/{good.version}" and agent_pid(root) == pid
        assert read_status(root)["state"] == "failed" and json.loads(
            (root / STATE_DIR / "state.json").read_text())["failed"]["2"].startswith("its agent did not prove itself")

        # Release 3: a new agent that works: it proves itself on its first poll and stays.
        fine = publish(store, models.first, changed_package(source_snapshot, builder, tmp_path / "fine"), signing_key)
        assert wait_for(lambda: read_status(root).get("release") == 3 and read_status(root).get("health") == "ok"
                        and read_status(root).get("agent_version") == fine.version, 240), read_status(root)
        assert polls(root, 3), read_status(root)
        assert os.readlink(root / "current") == f"releases/{fine.version}" and agent_pid(root) == pid
        assert read_status(root)["state"] == "idle" and read_status(root)["last_error"] is None
        assert json.loads((root / STATE_DIR / PROVEN).read_text()) == {"version": fine.version, "release": 3}
        assert not (root / STATE_DIR / TRIAL).exists()
        assert serving(device.daemon.http) == sha256_file(models.first)
        log = (root / "logs" / "agent.log").read_text()
        assert log.count(f"release {fine.version}'s agent is on trial: start 1 of 3") == 1, log
        assert f"release {fine.version}'s agent is on trial: start 2" not in log

        # A push of that broken agent: `fab deploy` restarts the agent on it, and the device goes back the same
        # way (the agent's memory untouched: a pushed release is no channel release), saying why until the
        # channel changes.
        host = replace(device, agent=AgentOptions(channel=f"{server.url}/channels/stable.json",
                                                  trust=(Path(f"{signing_key}.pub"),), interval=1))
        (pushed,) = deploy_fleet([host], models.second, builder=bad_builder, quiet=True)
        assert pushed.ok, pushed
        assert wait_for(lambda: os.readlink(root / "current") == f"releases/{fine.version}"
                        and read_status(root).get("agent_version") == fine.version, 240), read_status(root)
        failed = [r.name for r in (root / "releases").iterdir() if (r / ".failed").is_file()]
        assert len(failed) == 1 and failed[0] > fine.version, failed     # the pushed one (the push pruned release 2)
        assert f"release {failed[0]}'s agent is on trial: start 3 of 3" in (root / "logs" / "agent.log").read_text()
        assert polls(root, 2), read_status(root)
        status = read_status(root)
        assert (status["state"], status["release"], status["health"]) == ("rolled-back", 3, "ok"), status
        assert "did not prove itself (3 starts without completing a poll)" in status["last_error"]
        assert serving(device.daemon.http) == sha256_file(models.first)
    finally:
        subprocess.run([device.python, Layout(str(root)).scripts(str(root / "current")) + "/install.py", "--root",
                        str(root), "--service", "pidfile", "agent-remove"], capture_output=True, timeout=60)

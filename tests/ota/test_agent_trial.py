"""The agent's trial (deploy/host/agent_trial.py, run by its launcher at every start), on a deploy root of
folders: which release's agent each start runs, how starts are counted, and that a trial script or a fallback
that fails leaves `current`'s agent to run and the fallback to the next start. The whole fallback, with a
release whose agent raises at import, real nginx and the pidfile manager: test_agent_fallback.py."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.host import agent_trial
from deploy.host.layout import AGENT_LAUNCHER, AGENT_SYSTEMD_UNIT, AGENT_TRIAL, Layout
from device.agent import state
from tests.conftest import REPO

TRIAL_SCRIPT = REPO / "deploy" / "host" / AGENT_TRIAL


def make_root(tmp_path: Path, current: str, proven: str | None, releases=("r1", "r2")) -> Path:
    """A deploy root with empty releases, `current` pointing at one, and the agent's proof naming another."""
    root = tmp_path / "root"
    for name in releases:
        (root / "releases" / name).mkdir(parents=True)
    (root / "current").symlink_to(f"releases/{current}")
    (root / state.STATE_DIR).mkdir()
    if proven:
        (root / state.STATE_DIR / state.PROVEN).write_text(json.dumps({"version": proven, "release": 1}))
    return root


def start(root: Path) -> subprocess.CompletedProcess:
    """One start, as the launcher asks: the real script, in its own process."""
    return subprocess.run([sys.executable, str(TRIAL_SCRIPT), "--root", str(root), "start"],
                          capture_output=True, text=True, timeout=60)


def trial(root: Path) -> dict | None:
    path = root / state.STATE_DIR / state.TRIAL
    return json.loads(path.read_text()) if path.exists() else None


def test_a_proven_release_or_none_proven_runs_current_without_a_trial(tmp_path):
    root = make_root(tmp_path, "r2", proven="r2")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "since": 0, "starts": 2}))
    done = start(root)
    assert done.returncode == 0 and done.stdout == f"{root}/releases/r2\n"
    assert trial(root) is None, "a proven release's trial is over"
    (root / state.STATE_DIR / state.PROVEN).unlink()          # an agent that never polled: nothing to go back to
    assert start(root).stdout == f"{root}/releases/r2\n" and trial(root) is None


def test_each_start_of_an_unproven_agent_is_counted_and_a_new_release_starts_afresh(tmp_path):
    root = make_root(tmp_path, "r2", proven="r1")
    for number in (1, 2, 3):
        done = start(root)
        assert done.returncode == 0 and done.stdout == f"{root}/releases/r2\n", done.stderr
        assert f"release r2's agent is on trial: start {number} of 3" in done.stderr
        assert trial(root)["starts"] == number
    (root / state.STATE_DIR / state.TRIAL).write_text("{not json")      # damaged: a fresh trial, not a crash
    assert start(root).returncode == 0 and trial(root)["starts"] == 1
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r0", "since": 0, "starts": 9}))
    assert start(root).returncode == 0 and trial(root)["starts"] == 1 and trial(root)["version"] == "r2"


def test_a_fallback_that_fails_leaves_current_running_refuses_the_release_and_retries_at_the_next_start(tmp_path):
    """The proven release's install.py cannot run here (no lib/): the device stays on `current` with its agent,
    the agent's memory already refuses the release (written first), and the next start tries again."""
    root = make_root(tmp_path, "r2", proven="r1")
    state_file = root / state.STATE_DIR / "state.json"
    state_file.write_text(json.dumps({"serial": 7, "release": 2, "version": "r2", "failed": {}, "etag": "x",
                                      "last_modified": None}))
    for _ in range(3):
        start(root)
    done = start(root)
    assert done.returncode == 0 and done.stdout == f"{root}/releases/r2\n", done.stderr
    assert "did not prove itself (3 starts without completing a poll)" in done.stderr
    assert "could not go back to release r1" in done.stderr
    remembered = json.loads(state_file.read_text())
    assert (remembered["release"], remembered["version"], remembered["etag"]) == (1, "r1", None)
    assert "did not prove itself" in remembered["failed"]["2"] and remembered["serial"] == 7
    status = json.loads((root / state.STATE_DIR / "status.json").read_text())
    assert status["state"] == "failed" and status["failed_release"] == 2
    assert "going back to r1 failed" in status["last_error"]
    assert trial(root)["starts"] == 4
    again = start(root)
    assert "could not go back" in again.stderr and trial(root)["starts"] == 5


def test_the_launcher_runs_currents_agent_when_the_trial_script_itself_fails(tmp_path, monkeypatch):
    """A crash of the trial (here: a damaged copy) must not stop the agent: the launcher runs `current`'s."""
    root = make_root(tmp_path, "r2", proven="r1")
    layout = Layout(str(root))
    monkeypatch.syspath_prepend(str(REPO / "deploy" / "host"))
    install = importlib.import_module("install")
    agent_dir = Path(layout.agent)
    agent_dir.mkdir()
    (agent_dir / "agent.args").write_text("--interval\n1\n")
    (agent_dir / "trusted-0.pub").write_text("a key\n")
    (agent_dir / AGENT_LAUNCHER).write_text(install.agent_launcher(layout))
    (agent_dir / AGENT_LAUNCHER).chmod(0o755)
    ran = tmp_path / "ran"
    for release in ("r1", "r2"):        # each release's "venv python" says which release's agent ran
        python = root / "releases" / release / "venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(f'#!/bin/sh\necho "{release} $*" > {ran}\n')
        python.chmod(0o755)

    (agent_dir / AGENT_TRIAL).write_bytes(TRIAL_SCRIPT.read_bytes())
    subprocess.run([str(agent_dir / AGENT_LAUNCHER)], check=True, timeout=60, capture_output=True)
    assert ran.read_text() == f"r2 -m device.cli agent --root {root} --trust {agent_dir}/trusted-0.pub --interval 1\n"
    assert trial(root)["starts"] == 1

    (agent_dir / AGENT_TRIAL).write_text("raise SystemExit('a damaged trial')\n")
    done = subprocess.run([str(agent_dir / AGENT_LAUNCHER)], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0 and "a damaged trial" in done.stderr
    assert ran.read_text().startswith("r2 -m device.cli agent")


def test_an_agent_that_hangs_on_trial_is_killed_when_the_trial_time_is_up_and_one_that_proves_itself_is_not(
        tmp_path):
    """The watcher `start` leaves behind (here with 1 s for TRIAL_S): a hang becomes a failed start, which the
    supervisor follows with a start past the trial's time, which goes back."""
    root = make_root(tmp_path, "r2", proven="r1")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "since": 0, "starts": 1}))
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m", "device.cli", "agent"])
    watcher = subprocess.Popen([sys.executable, str(TRIAL_SCRIPT), "--root", str(root), "watch", "r2",
                                str(hung.pid), "1"], stderr=subprocess.PIPE, text=True)
    try:
        assert hung.wait(30) == -9
        assert "release r2's agent did not complete a poll" in watcher.communicate(timeout=30)[1]
    finally:
        hung.kill()

    proving = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m", "device.cli", "agent"])
    watcher = subprocess.Popen([sys.executable, str(TRIAL_SCRIPT), "--root", str(root), "watch", "r2",
                                str(proving.pid), "8"])
    try:
        state.prove(root / state.STATE_DIR, "r2", 2)          # what the agent writes after its first poll
        assert watcher.wait(30) == 0 and proving.poll() is None, "the trial is over: the agent runs on"
    finally:
        proving.kill()
        proving.wait()


def test_the_trial_script_and_the_agent_agree_on_the_files_and_the_lock():
    """The trial is copied into <root>/agent/ alone (no siblings to import): its names are written twice."""
    assert agent_trial.STATE_DIR == state.STATE_DIR
    assert agent_trial.PROVEN == f"{state.STATE_DIR}/{state.PROVEN}"
    assert agent_trial.TRIAL == f"{state.STATE_DIR}/{state.TRIAL}"
    assert f"/r/{agent_trial.DEPLOY_LOCK}" == Layout("/r").lock
    assert agent_trial.UNIT == os.path.basename(AGENT_SYSTEMD_UNIT)
    from device.agent.agent import LAUNCHER

    assert agent_trial.SETTINGS == f"{os.path.dirname(LAUNCHER)}/agent.args"


@pytest.mark.parametrize("options, expected", [
    ("", ("http://127.0.0.1:8080/healthz", "60")),
    ("--channel\nhttp://x/c.json\n--daemon-http\n127.0.0.1:9000\n--health-timeout\n20\n",
     ("http://127.0.0.1:9000/healthz", "20")),
])
def test_the_fallback_checks_the_daemon_where_the_agent_does(tmp_path, options, expected):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "agent.args").write_text(options)
    assert agent_trial.daemon_settings(str(tmp_path)) == expected

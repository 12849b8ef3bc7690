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
import time
from pathlib import Path

import pytest

from deploy.host import agent_trial
from deploy.host.layout import AGENT_LAUNCHER, AGENT_SYSTEMD_UNIT, AGENT_TRIAL, Layout
from device.agent import agent as agent_module
from device.agent import state
from device.agent.agent import Agent, AgentConfig
from testkit.processes import wait_until
from tests.conftest import REPO, free_port

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


def test_a_fallback_that_fails_runs_the_proven_agent_refuses_the_release_and_is_not_retried_at_every_start(
        tmp_path):
    """The proven release's install.py cannot run here (no lib/): the device stays on `current`'s daemon but runs
    the proven release's agent, the agent's memory already refuses the release (written first), and the next
    starts run that agent again without switching the daemon back and forth each time."""
    root = make_root(tmp_path, "r2", proven="r1")
    state_file = root / state.STATE_DIR / "state.json"
    state_file.write_text(json.dumps({"serial": 7, "release": 2, "version": "r2", "failed": {}, "etag": "x",
                                      "last_modified": None}))
    for _ in range(3):
        start(root)
    done = start(root)
    assert done.returncode == 0 and done.stdout == f"{root}/releases/r1\n", done.stderr
    assert "did not prove itself (3 starts without completing a poll)" in done.stderr
    assert "could not go back to release r1" in done.stderr
    remembered = json.loads(state_file.read_text())
    assert (remembered["release"], remembered["version"], remembered["etag"]) == (1, "r1", None)
    assert "did not prove itself" in remembered["failed"]["2"] and remembered["serial"] == 7
    status = json.loads((root / state.STATE_DIR / "status.json").read_text())
    assert status["state"] == "failed" and status["failed_release"] == 2
    assert "going back to r1 failed" in status["last_error"]
    assert trial(root)["starts"] == 4 and "install.py said nothing" in trial(root)["stuck"]
    again = start(root)
    assert again.stdout == f"{root}/releases/r1\n" and "Going back" not in again.stderr, again.stderr
    assert "going back failed" in again.stderr and trial(root)["starts"] == 4
    assert agent_trial.refuse(str(root), "r2", {"version": "r1", "release": 1}, "again", trial(root)) == 2, \
        "a fallback done again still names the refused release"


def test_a_rollback_that_hangs_is_stopped(tmp_path, monkeypatch):
    """install.py rollback is given two health checks and a margin, not for ever (here: 2 × 0.5 s + 1 s)."""
    root = make_root(tmp_path, "r2", proven="r1")
    script = root / "releases" / "r1" / "lib" / "deploy" / "host" / "install.py"
    script.parent.mkdir(parents=True)
    script.write_text("import sys, time\nif 'rollback' in sys.argv: time.sleep(120)\n")
    (root / "agent").mkdir()
    (root / "agent" / "agent.args").write_text("--health-timeout\n0.5\n")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "starts": 3}))
    monkeypatch.setattr(agent_trial, "ROLLBACK_MARGIN_S", 1)
    assert agent_trial.start(str(root)) == f"{root}/releases/r1"
    assert trial(root)["stuck"] == "install.py took more than 2 s: stopped"


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


def stand_in_agent(script: str = "import time; time.sleep(120)", command: str = "agent") -> subprocess.Popen:
    """A process whose command line is an agent's (`python ... -m device.cli agent`), running `script`."""
    return subprocess.Popen([sys.executable, "-c", script, "-m", "device.cli", command])


def test_an_agent_that_hangs_on_trial_is_killed_when_the_trial_time_is_up_and_one_that_proves_itself_is_not(
        tmp_path):
    """The watcher `start` leaves behind (here with 1 s for TRIAL_S): a hang is recorded in the trial, and the
    supervisor's next start goes back."""
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
    assert trial(root)["hung"] is True and trial(root)["starts"] == 1
    done = start(root)
    assert "did not prove itself (hung: no poll completed in 600 s)" in done.stderr, done.stderr
    assert "Going back to release r1" in done.stderr
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "starts": 1}))

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
    ("", ("http://127.0.0.1:8080/healthz", 60)),
    ("--channel\nhttp://x/c.json\n--daemon-http\n127.0.0.1:9000\n--health-timeout\n20\n",
     ("http://127.0.0.1:9000/healthz", 20)),
    ("--health-timeout\nnan\n", ("http://127.0.0.1:8080/healthz", 60)),
    ("--health-timeout\nsoon\n", ("http://127.0.0.1:8080/healthz", 60)),
])
def test_the_fallback_checks_the_daemon_where_the_agent_does(tmp_path, options, expected):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "agent.args").write_text(options)
    assert agent_trial.daemon_settings(str(tmp_path)) == expected


def test_a_release_whose_agent_only_rewrites_its_status_is_proven_by_the_watcher_and_stays(tmp_path):
    """A release built before the trial existed (a `fab rollback` to it) never writes proven.json: its agent
    only rewrites status.json after each poll, as every agent version does. The watcher `start` leaves proves
    it from that, with the agent's installed release number, and the agent runs on."""
    root = make_root(tmp_path, "r2", proven="r1")
    (root / state.STATE_DIR / "state.json").write_text(json.dumps({"release": 5, "version": "r9"}))
    (root / state.STATE_DIR / "status.json").write_text(json.dumps({"state": "idle"}))
    status = root / state.STATE_DIR / "status.json"
    old_agent = stand_in_agent(   # an old agent: the first poll after a second, then as a new file, as they write it
        f"import os, time; time.sleep(1); open('{status}.tmp', 'w').write('{{}}'); "
        f"os.replace('{status}.tmp', '{status}'); time.sleep(120)")
    try:
        with open(tmp_path / "launcher.log", "w") as log:
            done = subprocess.run([sys.executable, str(TRIAL_SCRIPT), "--root", str(root), "--pid", str(old_agent.pid),
                                   "start"], stdout=subprocess.PIPE, stderr=log, text=True, timeout=60)
        assert done.stdout == f"{root}/releases/r2\n" and trial(root)["starts"] == 1
        proof = root / state.STATE_DIR / state.PROVEN
        assert wait_until(lambda: json.loads(proof.read_text())["version"] == "r2"), \
            (tmp_path / "launcher.log").read_text()
        assert json.loads(proof.read_text()) == {"version": "r2", "release": 5}
        assert trial(root) is None and old_agent.poll() is None, "proven: the trial is over, the agent runs on"
        again = start(root)
        assert again.stdout == f"{root}/releases/r2\n" and "on trial" not in again.stderr and trial(root) is None
    finally:
        old_agent.kill()
        old_agent.wait()


def test_an_agent_that_writes_no_status_is_not_proven(tmp_path, monkeypatch):
    """The watcher's proof is a status file rewritten after the start: one left from before is none."""
    root = make_root(tmp_path, "r2", proven="r1")
    (root / state.STATE_DIR / "status.json").write_text("{}")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "starts": 1}))
    silent = stand_in_agent()
    monkeypatch.setattr(agent_trial, "WATCH_STEP_S", 0.2)
    try:
        agent_trial.watch(str(root), "r2", silent.pid, 1)
        assert silent.wait(10) == -9 and trial(root)["hung"] is True
        assert json.loads((root / state.STATE_DIR / state.PROVEN).read_text())["version"] == "r1"
    finally:
        silent.kill()
        silent.wait()


def test_wall_clock_time_does_not_end_a_trial(tmp_path):
    """A trial begun yesterday (a device unplugged during its first poll, a clock set right by NTP), or a damaged
    time, is not over: only its starts and the watcher's own clock count."""
    root = make_root(tmp_path, "r2", proven="r1")
    for since in ("0", "NaN", "-Infinity", "1e308"):
        (root / state.STATE_DIR / state.TRIAL).write_text('{"version": "r2", "since": %s, "starts": 1}' % since)
        done = start(root)
        assert done.stdout == f"{root}/releases/r2\n" and "start 2 of 3" in done.stderr, done.stderr


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 1e12])
def test_the_watcher_never_waits_longer_than_the_trial(tmp_path, monkeypatch, seconds):
    root = make_root(tmp_path, "r2", proven="r1")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "starts": 1}))
    monkeypatch.setattr(agent_trial, "TRIAL_S", 1)
    monkeypatch.setattr(agent_trial, "WATCH_STEP_S", 0.2)
    hung = stand_in_agent()
    try:
        began = time.monotonic()
        agent_trial.watch(str(root), "r2", hung.pid, seconds)
        assert hung.wait(10) == -9 and time.monotonic() - began < 10
    finally:
        hung.kill()
        hung.wait()


def test_the_watcher_kills_only_an_agent(tmp_path):
    """A pid reused by the daemon (`device.cli run`) or by a finished process is not the agent on trial."""
    root = make_root(tmp_path, "r2", proven="r1")
    (root / state.STATE_DIR / state.TRIAL).write_text(json.dumps({"version": "r2", "starts": 1}))
    daemon, agent = stand_in_agent(command="run"), stand_in_agent()
    try:
        assert not agent_trial.still_on_trial(str(root), "r2", daemon.pid)
        assert agent_trial.still_on_trial(str(root), "r2", agent.pid)
        assert not agent_trial.still_on_trial(str(root), "r3", agent.pid)
        agent.kill()
        agent.wait()
        assert not agent_trial.still_on_trial(str(root), "r2", agent.pid)
    finally:
        for process in (daemon, agent):
            process.kill()
            process.wait()


def test_the_last_error_comes_from_the_log_the_agent_writes_now(tmp_path):
    """The pidfile manager's logs/agent.log is where the launcher's output goes when it is in use; under
    systemd a logs/agent.log left from before must not give a stale error."""
    root = make_root(tmp_path, "r2", proven="r1")
    (root / "logs").mkdir()
    log = root / "logs" / "agent.log"
    log.write_text("bloomkit agent trial: release r2's agent is on trial: start 1 of 3\nRuntimeError: old news\n")
    code = f"from deploy.host import agent_trial; print(agent_trial.last_error({str(root)!r}, 'r2'))"
    for stderr, expected in ((open(log, "a"), "RuntimeError: old news"), (subprocess.DEVNULL, "None")):
        done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              cwd=REPO, env={**os.environ, "PATH": ""}, timeout=60)  # PATH: no journalctl here
        assert done.stdout.strip() == expected


def agent_on(tmp_path: Path) -> tuple[Path, Agent]:
    """An agent whose code is release r1's device package (r2 has another), `current` on r1, its store down."""
    root = make_root(tmp_path, "r1", proven=None)
    for name in ("r1", "r2"):
        (root / "releases" / name / "manifest.json").write_text(json.dumps({"files": {"d.whl": f"wheel-{name}"}}))
    agent = Agent(AgentConfig(channel_url=f"http://127.0.0.1:{free_port()}/channels/stable.json", trusted={},
                              root=root, device_id="pi"))
    agent.code_wheel = "wheel-r1"
    return root, agent


def test_a_push_switching_current_while_the_agent_proves_cannot_prove_the_other_release(tmp_path, monkeypatch):
    root, agent = agent_on(tmp_path)
    digest = agent_module._wheel_digest

    def push_meanwhile(release: Path):             # `current` switched to r2 right after it was read
        found = digest(release)
        (root / "current").unlink()
        (root / "current").symlink_to("releases/r2")
        return found

    monkeypatch.setattr(agent_module, "_wheel_digest", push_meanwhile)
    assert agent.check() == "store-down"
    assert state.proven(root / state.STATE_DIR)["version"] == "r1"


def test_a_proof_that_cannot_be_written_is_logged_and_written_at_the_next_poll(tmp_path, caplog):
    """A full disk (here: a folder where proven.json goes, which no rename replaces) must not crash the agent."""
    root, agent = agent_on(tmp_path)
    (root / state.STATE_DIR / state.PROVEN).mkdir()
    assert agent.check() == "store-down"
    assert "could not record that release r1's agent runs" in caplog.text
    (root / state.STATE_DIR / state.PROVEN).rmdir()
    assert agent.check() == "store-down"
    assert state.proven(root / state.STATE_DIR) == {"version": "r1", "release": 0}

"""The pidfile service manager shipped in each release, run as the host runs it (a subprocess, system
Python), on a release whose launcher is a small long-running program."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.processes import wait_until

SERVICE = Path(__file__).resolve().parents[2] / "deploy" / "host" / "service.py"
# Like the real launcher: execs a long-running Python whose command line names device.cli.
LAUNCHER = '#!/bin/sh\nexec "{python}" -c "import time; print(\'up\', flush=True); time.sleep(60)" device.cli run\n'


def service(root: Path, action: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SERVICE), "--root", str(root), action], capture_output=True,
                          text=True, timeout=30)


def status(root: Path) -> dict:
    return json.loads(service(root, "status").stdout)


@pytest.fixture
def root(tmp_path):
    release = tmp_path / "releases" / "r1"
    release.mkdir(parents=True)
    launcher = release / "run-daemon"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    (tmp_path / "current").symlink_to("releases/r1")
    yield tmp_path
    service(tmp_path, "stop")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_start_detaches_restart_replaces_stop_ends_it(root):
    assert service(root, "status").returncode == 3
    assert status(root) == {"running": False, "pid": None, "supervisor": None}
    assert service(root, "start").returncode == 0
    first, supervisor = status(root)["pid"], status(root)["supervisor"]
    assert alive(first) and os.getsid(first) == supervisor != os.getsid(0)   # its own session: survives ssh's
    service(root, "start")
    assert status(root)["pid"] == first                               # start is idempotent
    service(root, "restart")
    second = status(root)["pid"]
    assert second != first and alive(second) and not alive(first)
    third_supervisor = status(root)["supervisor"]
    service(root, "stop")
    assert not alive(second) and not alive(third_supervisor) and not alive(supervisor)
    assert not (root / "run" / "daemon.pid").exists() and not (root / "run" / "supervisor.pid").exists()
    deadline = time.monotonic() + 10
    while "up" not in (root / "logs" / "daemon.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = (root / "logs" / "daemon.log").read_text()
    assert log.count("starting ") == 2 and "up" in log


def test_a_stale_or_foreign_pid_is_not_the_daemon(root):
    (root / "run").mkdir()
    pidfile = root / "run" / "daemon.pid"
    pidfile.write_text(f"{os.getpid()}\n")                          # alive, but the test runner, not a daemon
    assert status(root)["running"] is False and not pidfile.exists()
    service(root, "stop")                                             # and stop must not kill it
    assert alive(os.getpid())


def wait_for(condition, timeout: float = 15):
    return wait_until(condition, timeout, step=0.05)


def test_a_daemon_that_dies_is_restarted_and_a_clean_exit_is_not(root):
    service(root, "start")
    first = status(root)["pid"]
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: status(root)["running"] and status(root)["pid"] != first)
    second = status(root)["pid"]
    assert alive(second) and not alive(first)
    assert "daemon killed by signal 9: restarting in 1 s" in (root / "logs" / "daemon.log").read_text()

    # A clean exit (status 0) is a stop, as with systemd's Restart=on-failure: nothing starts again.
    supervisor = status(root)["supervisor"]
    (root / "releases" / "r1" / "run-daemon").write_text("#!/bin/sh\nexit 0\n")
    os.kill(second, signal.SIGKILL)
    assert wait_for(lambda: not alive(supervisor))
    assert "daemon exited cleanly: not restarting" in (root / "logs" / "daemon.log").read_text()
    assert status(root)["running"] is False


def test_a_daemon_in_the_middle_of_its_exec_counts_as_running(tmp_path):
    """While the launcher execs Python, /proc/PID/cmdline reads empty for a moment (about 1 read in 100 here):
    that is a running daemon, not a stale pidfile to remove (a health check then took it for a dead daemon)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("host_service", SERVICE)
    host_service = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_service)
    launcher = tmp_path / "run-daemon"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    pidfile = tmp_path / "daemon.pid"
    for _ in range(20):
        daemon = subprocess.Popen([str(launcher)], stdout=subprocess.DEVNULL)
        pidfile.write_text(f"{daemon.pid}\n")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert host_service._alive(str(pidfile), host_service.MARKERS["daemon"]) == daemon.pid
        daemon.kill()   # ended by the test, not by a timer a loaded machine could outrun mid-check
        daemon.wait()
    assert host_service._alive(str(pidfile), host_service.MARKERS["daemon"]) is None and not pidfile.exists()

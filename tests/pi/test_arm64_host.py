"""scripts/arm64-pi itself: the host it starts looks like a 64-bit Pi OS, and `stop` leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.pi.conftest import SCRIPT, arm64_pi_script, start_pi


# Python and glibc of each Pi OS base.
RELEASE_FACTS = {"bookworm": {"python": [3, 11], "libc": ["glibc", "2.36"]},
                 "trixie": {"python": [3, 13], "libc": ["glibc", "2.41"]}}


@pytest.mark.slow
@pytest.mark.pi
def test_the_host_looks_like_a_64_bit_pi_os(arm64_pi):
    script = ("import getpass, json, os, platform, socket, sys, venv, ensurepip; print(json.dumps({"
              "'uname': os.uname().machine, 'machine': platform.machine(), 'python': sys.version_info[:2], "
              "'libc': platform.libc_ver(), 'user': getpass.getuser(), 'hostname': socket.gethostname(), "
              "'systemd': os.path.isdir('/run/systemd/system'), "
              "'model': open('/proc/cpuinfo').read().rpartition(': ')[2].strip()}))")
    facts = json.loads(arm64_pi.ssh(f'python3 -c "{script}"'))
    assert facts == {"uname": "aarch64", "machine": "aarch64", **RELEASE_FACTS[arm64_pi.suite],
                     "user": "pi", "hostname": "raspberrypi",
                     # No systemd as PID 1: `fab deploy` must pick its pidfile service manager here.
                     "systemd": False, "model": "Raspberry Pi 4 Model B Rev 1.5"}


def _processes_inside(root: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "root")) == root:
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def _mounts_below(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


@pytest.mark.slow
@pytest.mark.pi
def test_stop_ends_what_a_crashed_run_left_behind(arm64_pi, tmp_path):
    # A second run beside the session's (arm64_pi made sure the rootfs is built).
    pi = start_pi(tmp_path, arm64_pi.suite)
    pi.ssh("setsid sleep 600 </dev/null >/dev/null 2>&1 &")  # detached, as a deployed daemon is
    sshd = json.loads(arm64_pi_script("status", "--run-dir", str(pi.run_dir), "--json").stdout)["pid"]
    os.kill(sshd, signal.SIGKILL)  # the run's owner died without stopping it
    deadline = time.monotonic() + 10
    while sshd in _processes_inside(pi.filesystem) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_inside(pi.filesystem), "the detached process should have outlived sshd"
    assert subprocess.run([str(SCRIPT), "status", "--run-dir", str(pi.run_dir)]).returncode == 3

    arm64_pi_script("stop", "--run-dir", str(pi.run_dir))
    assert _processes_inside(pi.filesystem) == []
    assert _mounts_below(pi.run_dir) == []
    assert not pi.filesystem.exists()
    arm64_pi_script("stop", "--run-dir", str(pi.run_dir))  # again: nothing to do, no error


def test_a_missing_authorized_key_is_a_one_line_error_before_any_build(tmp_path):
    require(os.geteuid() == 0, "scripts/arm64-pi needs root")
    command = [str(SCRIPT), "start", "--port", "2222", "--authorized-key", str(tmp_path / "nope.pub"),
               "--host-key-dir", str(tmp_path / "keys")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "BLOOMKIT_CACHE": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr == f"arm64-pi: error: authorized key not found: {tmp_path / 'nope.pub'}\n"
    assert not (tmp_path / "arm64-pi").exists()

"""`arm64_pi`: the closest thing to a Raspberry Pi here, a Debian arm64 root filesystem whose own sshd runs
under qemu-user on a loopback port (scripts/arm64-pi; see docs/arm64-pi.md). Every test that uses it runs
on both bases of Raspberry Pi OS: Bookworm (Python 3.11) and Trixie (Python 3.13, no tflite-runtime)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, require

SCRIPT = REPO / "scripts" / "arm64-pi"
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
BUILD_TIMEOUT_S = 20 * 60
PI_UID = 1000  # the rootfs's `pi` user
DEPLOY_ROOT = "/opt/bloomkit"
SUITES = ("bookworm", "trixie")


@dataclass(frozen=True)
class Arm64Pi:
    """How to reach a running arm64 host, and where its files are seen from this machine."""

    host: str
    port: int
    user: str
    identity_file: Path
    known_hosts_file: Path
    suite: str               # the Debian release the host's Pi OS is based on
    root_dir: str            # the deploy root on the host, owned by `user`
    filesystem: Path         # the host's / as seen from here (an overlay, thrown away at the end)
    run_dir: Path            # scripts/arm64-pi's state for this run

    def local(self, remote_path: str) -> Path:
        """A path on the host, seen from this machine: for what a Pi would have before any deploy."""
        return self.filesystem / remote_path.lstrip("/")

    def ssh(self, command: str, timeout: float = 120) -> str:
        """Run `command` on the host as `user` with strict host-key checking; its stdout."""
        result = subprocess.run(
            ["ssh", "-p", str(self.port), "-i", str(self.identity_file), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts_file}",
             f"{self.user}@{self.host}", command],
            capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"`{command}` failed on the arm64 host: {result.stderr.strip()}"
        return result.stdout


def arm64_pi_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """scripts/arm64-pi with `args`; a failure fails the test with the end of the script's output."""
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        last_lines = "\n".join(result.stderr.strip().splitlines()[-20:])
        pytest.fail(f"scripts/arm64-pi {args[0]} failed:\n{last_lines}")
    return result


def start_pi(base: Path, suite: str) -> Arm64Pi:
    """Start a run of the suite's (built) rootfs on a free port, with a new client key, host key and known_hosts."""
    base.mkdir(parents=True, exist_ok=True)
    identity = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bloomkit-test", "-f", str(identity)],
                   check=True)
    port = free_port()
    # The run's mounts live in the script's own runs directory, not in pytest's tmp (which pytest deletes
    # later): after a crash, `scripts/arm64-pi stop` cleans up every run.
    state = json.loads(arm64_pi_script("start", "--suite", suite, "--port", str(port),
                                       "--authorized-key", f"{identity}.pub",
                                       "--host-key-dir", str(base / "host-keys"), "--json").stdout)
    key_type, key = Path(state["host_key"]).read_text().split()[:2]
    known_hosts = base / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
    return Arm64Pi(host="127.0.0.1", port=port, user="pi", identity_file=identity, known_hosts_file=known_hosts,
                   suite=suite, root_dir=DEPLOY_ROOT, filesystem=Path(state["root"]), run_dir=Path(state["run_dir"]))


@pytest.fixture(scope="session", params=SUITES)
def arm64_pi(request, tmp_path_factory) -> Arm64Pi:
    """Build (or reuse the cached) arm64 rootfs of each suite, run it as a host with per-run keys, stop it at
    the end (pytest runs all of one suite's tests, then the other's)."""
    require(os.geteuid() == 0, "the arm64 host needs root (chroot, mount)")
    require(shutil.which("debootstrap") is not None, "debootstrap not installed: apt-get install debootstrap")
    require(shutil.which("qemu-aarch64-static") is not None,
            "qemu-aarch64-static not installed: apt-get install qemu-user-static")
    require(BINFMT_ENTRY.exists() or shutil.which("update-binfmts") is not None,
            "no binfmt support for aarch64: apt-get install binfmt-support")
    require(shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None,
            "OpenSSH client not installed: apt-get install openssh-client")
    arm64_pi_script("build", "--suite", request.param, timeout=BUILD_TIMEOUT_S)
    pi = start_pi(tmp_path_factory.mktemp(f"arm64-pi-{request.param}"), request.param)
    try:
        # What the Pi's owner does once: `sudo install -d -o pi /opt/bloomkit`.
        pi.local(pi.root_dir).mkdir(parents=True)
        os.chown(pi.local(pi.root_dir), PI_UID, PI_UID)
        yield pi
    finally:
        arm64_pi_script("stop", "--run-dir", str(pi.run_dir))

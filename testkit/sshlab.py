"""Real OpenSSH servers on loopback ports, each a "host" with its own deploy root (and, when asked, a CPU budget
of its own): for the deploy tests and benchmarks/deploy_speed.py."""
from __future__ import annotations

import fcntl
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.inventory import DaemonOptions, Host
from deploy.host.layout import HOST_SCRIPTS
from testkit.cpubudget import CpuBudget
from testkit.link import Link
from testkit.processes import default_sigint, free_port

SSHD = Path("/usr/sbin/sshd")
PHOTOS_PER_HOST = 4
SOURCE_FPS = 4  # enough to be healthy, little CPU on a shared 2-core machine


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bloomkit-test", "-f", str(path)],
                   check=True)
    return path


@dataclass
class SshServer:
    """One sshd on 127.0.0.1:port; `stop()` kills it and every session it serves (with a CPU budget: every
    process the host runs, its daemon included)."""

    port: int
    directory: Path
    process: subprocess.Popen | None = None
    cpu: CpuBudget | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.cpu is not None:
            self.cpu.close()
            self.cpu = None

    def kill_sessions(self) -> int:
        """Kill the per-connection sshd children (as a dropped network link would), keep the listener."""
        import psutil

        children = psutil.Process(self.process.pid).children(recursive=True)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:  # it ended with its session's process, killed just before
                pass
        return len(children)


@dataclass
class SshLab:
    """Per-test hosts: client key, known_hosts and photos shared, a fresh sshd and root per host; with
    `host_cpu` > 0, each host's processes share that many cores of CPU (a cgroup per host), 0: unconstrained."""

    base: Path
    identity: Path
    known_hosts: Path
    photos: Path
    host_cpu: float = 0.0
    servers: list[SshServer] = field(default_factory=list)

    def start_server(self, name: str, *, trusted: bool = True, path: str | None = None,
                     address: str = "127.0.0.1") -> SshServer:
        """An sshd for host `name` on loopback `address` (IPv4 or IPv6); its sessions get `path` as PATH if
        given (a host with fewer tools)."""
        directory = self.base / name
        directory.mkdir(parents=True)
        host_key = keygen(directory / "ssh_host_ed25519_key")
        port = free_port()
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", f"ListenAddress {address}", f"HostKey {host_key}", f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.identity}.pub", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "Subsystem sftp internal-sftp", "LogLevel ERROR", "MaxStartups 50",
            # A home of its own, as a Pi's deploy user has: bash, started by sshd, sources ~/.bashrc even for
            # `ssh host command`, and this machine's (pyenv's setup, ~0.15 s) would run before every command.
            f"SetEnv HOME={directory}" + (f" PATH={path}" if path else ""), "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)
        cpu = CpuBudget.create(f"bloomkit-{os.getpid()}-{name}", self.host_cpu) if self.host_cpu else None
        server = SshServer(port, directory, cpu=cpu)
        self.servers.append(server)
        server.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], start_new_session=True,
                                          preexec_fn=cpu.enter if cpu else None,
                                          stderr=open(directory / "sshd.log", "wb"))
        _wait_for_port(address, port, server.process)
        if trusted:
            self._trust(server, address, port)
        return server

    def link(self, server: SshServer) -> Link:
        """A link to `server` that the test can stall and cut (testkit.link); the server's host key is
        trusted on the link's port too. Reach the host through it with `dataclasses.replace(host, port=link.port)`."""
        link = Link(server.port)
        self._trust(server, "127.0.0.1", link.port)
        return link

    def _trust(self, server: SshServer, address: str, port: int) -> None:
        public = (server.directory / "ssh_host_ed25519_key.pub").read_text().split()
        with open(self.known_hosts, "a") as file:
            file.write(f"[{address}]:{port} {public[0]} {public[1]}\n")

    def host(self, name: str, server: SshServer | None = None, *, port: int | None = None, **settings) -> Host:
        """A Host for `server` (or an unused `port`), with its own root and daemon HTTP port."""
        root = self.base / name / "opt" / "bloomkit"
        daemon = DaemonOptions(http=f"127.0.0.1:{free_port()}", source=f"folder:{self.photos}",
                               args=("--source-fps", str(SOURCE_FPS)))
        return Host(name=name, hostname="127.0.0.1", port=server.port if server else port, user=getpass.getuser(),
                    identity=self.identity, known_hosts=self.known_hosts, root=str(root),
                    python="/usr/bin/python3", daemon=daemon, **settings)

    def inventory(self, hosts: list[Host]) -> Path:
        """The hosts as a fleet.yaml, for the `fab` command line."""
        import yaml

        def settings(host: Host) -> dict:
            return {"hostname": host.hostname, "port": host.port, "user": host.user, "identity": str(host.identity),
                    "known_hosts": str(host.known_hosts), "root": host.root, "python": host.python,
                    "daemon": {"http": host.daemon.http, "source": host.daemon.source, "args": list(host.daemon.args)}}
        path = self.base.parent / "fleet.yaml"
        path.write_text(yaml.safe_dump({"hosts": {h.name: settings(h) for h in hosts}}))
        return path

    def start_daemon(self, host: Host, timeout: float = 60) -> None:
        """Start a test host's deployed daemon with the release's service manager (within the host's CPU
        budget), as a Pi does when it boots, and return once it serves the release's model."""
        cpu = next(server.cpu for server in self.servers if server.port == host.port)
        scripts = Path(host.root) / "current" / HOST_SCRIPTS
        subprocess.run([host.python, scripts / "service.py", "--root", host.root, "start"], check=True,
                       preexec_fn=cpu.enter if cpu else None)
        subprocess.run([host.python, scripts / "health.py", "--url", f"http://{host.daemon.http}/healthz", "--root",
                        host.root, "--manifest", f"{host.root}/current/manifest.json", "--timeout", str(timeout)],
                       check=True, stdout=subprocess.DEVNULL)

    def close(self) -> None:
        for root in self.base.glob("*/opt/bloomkit"):
            stop_daemon(root)
        for server in self.servers:
            server.stop()


def stop_daemon(root: Path) -> None:
    """Stop a test host's daemon and its supervisor (one process group), and its update agent's if it runs
    one, as the teardown must leave no process behind."""
    for pidfile in (root / "run" / "supervisor.pid", root / "run" / "agent-supervisor.pid"):
        if pidfile.is_file():
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def deploy_lock_held(root: Path) -> bool:
    """Whether some process holds the flock on a test host's deploy lock (the test hosts' roots are local)."""
    try:
        file = open(root / ".deploy.lock")
    except FileNotFoundError:
        return False
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False


def start_fab(builder, *args: str) -> subprocess.Popen:
    """The `fab` command line, started in the builder's source snapshot with the builder's cache."""
    fab = Path(sys.executable).parent / "fab"
    env = {**os.environ, "BLOOMKIT_CACHE": str(builder.cache_dir.parent)}
    return subprocess.Popen([str(fab), *args], cwd=builder.repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=default_sigint)


def run_fab(builder, *args: str) -> subprocess.CompletedProcess:
    """`fab` run to its end."""
    with start_fab(builder, *args) as process:
        stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _wait_for_port(address: str, port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        try:
            with socket.create_connection((address, port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}")


def make_lab(base: Path, client_key: Path, photos: Path, host_cpu: float = 0.0) -> SshLab:
    base.mkdir(parents=True, exist_ok=True)
    lab = SshLab(base / "hosts", client_key, base / "known_hosts", photos, host_cpu)
    lab.known_hosts.touch()
    return lab


def snapshot_sources(destination: Path) -> Path:
    """The sources as they are now: a wheel built from them stays the same while the tree is being edited."""
    from deploy.build import PACKAGES, REPO

    for name in ("pyproject.toml", "README.md", "fabfile.py"):
        shutil.copy(REPO / name, destination / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination

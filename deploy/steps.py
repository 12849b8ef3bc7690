"""The steps on one host over one SSH connection: the deploy lock, the facts, and every change, each a call
of the host-side scripts in `deploy/host/` (the same code a device agent runs without SSH)."""
from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy.build import Target
from deploy.errors import DeployError
from deploy.host.layout import FAILED_MARKER, Layout
from deploy.inventory import Host
from deploy.releases import Bundle
from deploy.ssh import Remote, quote

OLDEST_PYTHON = (3, 10)
MACHINES = ("aarch64", "x86_64")
DISK_MARGIN = 64 << 20
VENV_GROWTH = 4            # an installed venv takes about this many times its wheels' size
LOCK_BUSY = 75             # flock's exit status when another deploy holds the host's lock
ANOTHER_DEPLOY = "another deploy to this host is running"
UNIT = "bloomkit-device.service"
HOST = Path(__file__).resolve().parent / "host"
FACTS_SCRIPT = (HOST / "facts.py").read_text()


@dataclass(frozen=True)
class Facts:
    """What pre-flight read on the host."""

    machine: str
    os: str
    python: tuple[int, int]
    glibc: str
    free: int
    current: str | None
    manifest: dict | None      # the current release's
    releases: list[str]
    venv_of: dict[str, str | None]
    venvs: list[str]
    failed: list[str]          # releases marked as having failed their health check
    systemd: bool
    root_user: bool
    has_venv: bool
    writable: bool
    probe: str
    healthz: dict | None       # what answered on the daemon's /healthz during pre-flight (None: no answer)
    port_taken: bool = False   # whether anything listened on the daemon's port
    service_pids: dict | None = None   # {"pidfile": pid, "systemd": pid}: the daemon as each manager knows it
    agent: bool = False        # whether a deploy installed the update agent's settings (<root>/agent/)

    @property
    def serving_current(self) -> bool:
        """Whether the daemon answered healthy with the current release's model during pre-flight."""
        if not self.healthz or not self.manifest:
            return False
        serving = (self.healthz.get("model") or {}).get("sha256")
        return self.healthz.get("status") == "ok" and serving == self.manifest["model"]["sha256"]

    @property
    def identity(self) -> str | None:
        return (self.manifest or {}).get("identity")

    @property
    def target(self) -> Target:
        major, minor = (int(n) for n in self.glibc.split(".")[:2])
        return Target(self.machine, self.python, (major, minor))


# What a dry run assumes instead of asking the host: a Raspberry Pi OS Bookworm 64-bit with nothing deployed.
DRY_RUN_FACTS = dict(machine="aarch64", os="(assumed in a dry run)", python=[3, 11], glibc="2.36", free=1 << 40,
                     current=None, manifest=None, releases=[], venv_of={}, venvs=[], failed=[], systemd=True,
                     root_user=False, has_venv=True, writable=True, probe="/", healthz=None)


class HostSteps:
    """The remote steps on one host, over one Remote."""

    def __init__(self, host: Host, remote: Remote) -> None:
        self.host = host
        self.remote = remote
        self.layout = Layout(host.root)
        self.facts: Facts | None = None

    @property
    def manager(self) -> str:
        """The service manager: the inventory's setting, "auto" meaning systemd when the host runs it."""
        if self.host.service != "auto":
            return self.host.service
        return "systemd" if self.facts is not None and self.facts.systemd else "pidfile"

    def lock(self, wait: float = 0) -> None:
        """Hold the host's deploy lock for as long as this connection lasts: flock(1) on a file under the root,
        on an SSH channel of its own. When the channel ends (closed, process gone, connection dropped), sshd
        ends the command and the kernel releases the lock, so it cannot go stale. Waits up to `wait` seconds
        for another deploy to finish; by default fails at once."""
        root = self.host.root
        timing = f"-w {wait:g}" if wait else "-n"
        command = (f"mkdir -p {quote(root)} 2>/dev/null || "
                   f"{{ echo {quote(f'cannot create {root}: create it owned by the deploy user')} >&2; exit 1; }}; "
                   "command -v flock >/dev/null || "
                   "{ echo 'flock not found on the host: install util-linux' >&2; exit 1; }; "
                   f"exec flock {timing} -E {LOCK_BUSY} {quote(self.layout.lock)} -c 'echo locked; exec cat'")
        failure = self.remote.hold(command, timeout=wait + 30)
        if failure is not None:
            status, line = failure
            raise DeployError(ANOTHER_DEPLOY if status == LOCK_BUSY else line)

    def read_facts(self) -> Facts:
        check = (f"command -v {shlex.quote(self.host.python)} >/dev/null || "
                 f"{{ echo '{self.host.python} not found on the host' >&2; exit 127; }}; ")
        arguments = quote(self.host.root, FAILED_MARKER, self.host.daemon.healthz_url, UNIT,
                          *self.host.daemon.local_address)
        command = check + f"{quote(self.host.python, '-c', FACTS_SCRIPT)} {arguments}"
        shown = check + f"{shlex.quote(self.host.python)} -c '<deploy/host/facts.py>' {arguments}"
        output = self.remote.run(command, dry_output=json.dumps(DRY_RUN_FACTS), shown=shown)
        data = json.loads(output)
        data["python"] = tuple(data["python"])
        self.facts = Facts(**data)
        return self.facts

    def check_can_run(self) -> None:
        """Refuse a host that cannot run the device, before anything is built or sent."""
        f = self.facts
        if f.machine in ("armv7l", "armv6l", "armv8l", "i686", "i386"):
            raise DeployError(f"{f.machine} is a 32-bit OS: bloomkit needs a 64-bit OS (64-bit Raspberry Pi OS)")
        if f.machine not in MACHINES:
            raise DeployError(f"unsupported CPU architecture {f.machine} (supported: {', '.join(MACHINES)})")
        if f.python < OLDEST_PYTHON:
            raise DeployError(f"{self.host.python} is Python {f.python[0]}.{f.python[1]}: bloomkit needs "
                              f"{OLDEST_PYTHON[0]}.{OLDEST_PYTHON[1]} or newer")
        if not f.glibc:
            raise DeployError(f"{f.os} has no glibc: the device's wheels need a glibc system such as Debian")
        if not f.has_venv:
            raise DeployError(f"{self.host.python} cannot make venvs: install python3-venv on the host")
        if not f.writable:
            raise DeployError(f"{f.probe} is not writable: create {self.host.root} owned by the deploy user")

    def check_port(self) -> None:
        """Refuse a daemon port another program holds: the new daemon could not listen, and its health check
        might be answered by that program. This root's own daemon may hold it (its /healthz pid is the one
        the service manager knows; a daemon from before /healthz said its pid counts as ours if the service
        runs one)."""
        f = self.facts
        if not f.port_taken:
            return
        healthz, ours = f.healthz or {}, (f.service_pids or {}).get(self.manager)
        if ours and healthz.get("pid", ours) == ours and "model" in healthz:
            return
        who = f"a bloomkit daemon not started by {self.host.root} (pid {healthz['pid']})" if "pid" in healthz \
            else "another program"
        raise DeployError(f"the daemon's port {self.host.daemon.port} is taken by {who}: stop it, or give this "
                          f"host another daemon http port in the inventory")

    def check_disk(self, bundle: Bundle, wheel_bytes: int) -> None:
        needed = sum(p.stat().st_size for p in bundle.files()) * 2 + wheel_bytes * VENV_GROWTH + DISK_MARGIN
        if self.facts.free < needed:
            raise DeployError(f"disk too full: {self.facts.free >> 20} MB free at {self.facts.probe}, "
                              f"need {needed >> 20} MB")

    def upload(self, bundle: Bundle, wheelhouse_files: list[Path], key: str) -> None:
        """Into new directories next to the live ones, never into them."""
        incoming = self.layout.incoming(bundle.version)
        wheels = self.layout.wheelhouse(key) + ".incoming"
        make = quote("mkdir", "-p", incoming)
        self.remote.run(f"{make} && rm -rf {quote(wheels)} && mkdir -p {quote(wheels)}" if wheelhouse_files else make)
        for path in bundle.files():
            self.remote.put(path, f"{incoming}/{path.name}")
        for path in wheelhouse_files:
            self.remote.put(path, f"{wheels}/{path.name}")

    def host_script(self, release_dir: str, action: str, *args: object, url: bool = False,
                    timeout: float | None = None) -> str:
        """The command that runs `install.py ACTION` from a release's (or an upload's) host scripts, given the
        daemon's address and a timeout if asked."""
        script = f"{self.layout.scripts(release_dir)}/install.py"
        options = ["--url", self.host.daemon.healthz_url] if url else []
        options += ["--timeout", timeout] if timeout is not None else []
        return quote(self.host.python, script, "--root", self.host.root, "--service", self.manager, *options,
                     action, *args)

    def current_script(self, action: str, *args: object, url: bool = False, timeout: float | None = None) -> str:
        """`install.py ACTION` from the current release."""
        return self.host_script(self.layout.current, action, *args, url=url, timeout=timeout)

    def verify(self, bundle: Bundle, key: str, with_wheelhouse: bool) -> None:
        """Unpack the upload's wheel (the host scripts are in it), then check the sums of the upload, and of the
        wheelhouse, which moves to its place."""
        incoming = self.layout.incoming(bundle.version)
        unpack = f"cd {quote(incoming)} && {quote(self.host.python, '-m', 'zipfile', '-e', bundle.wheel, 'lib')}"
        wheelhouse = ("--wheelhouse", key) if with_wheelhouse else ()
        self.remote.run(f"{unpack} && cd / && {self.host_script(incoming, 'verify', bundle.version, *wheelhouse)}")

    def place(self, bundle: Bundle) -> None:
        """Build the venv if its requirements have none yet, link it, move the release into place."""
        self.remote.run(self.host_script(self.layout.incoming(bundle.version), "place", bundle.version))

    def install_secret(self, local: Path, name: str, version: str | None = None) -> bool:
        """Put a credentials file into the host's data directory (`secrets/NAME`, 0600, the daemon's user's),
        never into a release and never on a command line or in the output; True if it changed. The upload goes
        into a file made 0600 before a byte of it is written."""
        uploaded = f"{self.layout.root}/.{name}.upload"
        self.remote.run(f"umask 077 && rm -f {quote(uploaded)} && : > {quote(uploaded)}")
        self.remote.put(local, uploaded)
        script = self.host_script(self.layout.release(version), "secret", name, uploaded) if version else \
            self.current_script("secret", name, uploaded)
        output = self.remote.run(script, dry_output='{"ok": true, "changed": false}')
        return json.loads(output.strip().splitlines()[-1])["changed"]

    def install_agent(self, restart: bool) -> dict:
        """Upload the inventory's agent settings (its options; copies of the public keys it trusts, never a
        private one; the daemon's options, which pulled releases run with) for install.py agent-install, which
        puts them in place and (re)starts the agent if needed (or `restart`): {"ok", "changed", "restarted"}."""
        upload = f"{self.layout.root}/.agent.upload"
        self.remote.run(f"rm -rf {quote(upload)} && mkdir -p {quote(upload)}")
        with tempfile.TemporaryDirectory(prefix="bloomkit-agent-") as folder:
            for name, options in (("agent.args", self.host.agent_args()),
                                  ("daemon.args", self.host.daemon.run_options())):
                (Path(folder) / name).write_text("".join(f"{option}\n" for option in options))
                self.remote.put(Path(folder) / name, f"{upload}/{name}")
        for number, key in enumerate(self.host.agent.trust):
            self.remote.put(key, f"{upload}/trusted-{number}.pub")
        command = self.current_script("agent-install", upload, *(("--restart",) if restart else ()))
        return self.answer(command, '{"ok": true, "changed": true, "restarted": true}', "the agent's set-up")

    def remove_agent(self) -> None:
        """Stop the update agent a deploy installed and remove its settings."""
        self.answer(self.current_script("agent-remove"), '{"ok": true, "removed": true}', "the agent's removal")

    def switch(self, version: str) -> None:
        """Point `current` at `version` atomically."""
        self.remote.run(self.host_script(self.layout.release(version), "switch", version))

    def restart(self) -> None:
        self.remote.run(self.current_script("restart"))

    def wait_healthy(self, timeout: float) -> dict:
        """The daemon's /healthz, asked on the host; raises DeployError if it is not healthy with the current
        release's model, or not this root's daemon (the reason ends with the release's last error logged)."""
        answer = self.answer(self.current_script("health", url=True, timeout=timeout),
                             '{"healthy": true, "healthz": {}}', "the health check")
        if not answer["healthy"]:
            raise DeployError(answer["reason"])
        return answer["healthz"]

    def activate(self, version: str, timeout: float) -> dict:
        """Point `current` at `version`, restart the daemon, wait until it is healthy with that model."""
        self.switch(version)
        self.restart()
        return self.wait_healthy(timeout)

    def go_live(self, version: str, timeout: float, may_reload: bool = True) -> dict:
        """Switch to `version` and bring the daemon onto it, the host deciding between a hot reload (only the
        model changed) and a restart (install.py go-live, the agent's rule too): {"healthy", "reason",
        "healthz", "stages"}."""
        command = self.host_script(self.layout.release(version), "go-live", version,
                                   *(() if may_reload else ("--no-reload",)), url=True, timeout=timeout)
        dry = {"healthy": True, "reason": None, "healthz": {}, "stages": [["switch", 0], ["restart", 0], ["health", 0]]}
        return self.answer(command, json.dumps(dry), "the switch")

    def rollback(self, to: str | None, timeout: float) -> dict:
        """The host's own rollback (install.py): {"ok", "new", "stage", "reason"}."""
        command = self.current_script("rollback", *(("--to", to) if to else ()), url=True, timeout=timeout)
        return self.answer(command, '{"ok": true, "new": null, "stage": null, "reason": null}', "the rollback")

    def answer(self, command: str, dry_output: str, what: str) -> dict:
        """Run an install.py action that answers with one JSON line (exiting 1 when the answer is a failure);
        any other output is why `what` could not run."""
        output = self.remote.run(command + " 2>&1 || true", dry_output=dry_output)
        lines = output.strip().splitlines() or ["no output"]
        try:
            return json.loads(lines[-1])
        except ValueError:
            raise DeployError(f"{what} could not run on the host: {lines[-1].strip()}") from None

    def mark_failed(self, version: str, reason: str) -> None:
        """Record on the host that `version` failed, so pruning drops it first and rollbacks skip it."""
        self.remote.run(self.current_script("mark-failed", version, reason))

    def unset(self) -> None:
        """After a failed first deploy: no earlier release to return to, so nothing stays live."""
        self.remote.run(self.current_script("unset"))

    def prune(self, keep: int) -> None:
        """Delete old releases and unused venvs, and leftovers of interrupted uploads."""
        self.remote.run(self.current_script("prune", "--keep", keep))

    def logs(self, lines: int) -> str:
        return self.remote.run(self.current_script("logs", "--lines", lines))

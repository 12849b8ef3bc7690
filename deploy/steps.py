"""One host's deploy, stage by stage: connect, pre-flight, build, upload, verify, venv, switch, reload or restart,
health, prune; after a failure past the switch, the switch back. Also the host side of rollback/status/logs."""
from __future__ import annotations

import json
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deploy.build import Builder, Target, Wheelhouse
from deploy.errors import ConnectError, DeployError
from deploy.inventory import Host
from deploy.releases import FAILED_MARKER, HOST_SCRIPTS, MODEL_NAME, Bundle, Layout, new_version, stage, to_prune
from deploy.report import DRY_RUN, FAILED, INTERRUPTED, OK, ROLLED_BACK, SKIPPED, HostResult
from deploy.services import service_for
from deploy.ssh import Remote, describe_ssh_error, quote

OLDEST_PYTHON = (3, 10)
MACHINES = ("aarch64", "x86_64")
DISK_MARGIN = 64 << 20
RELOAD_TIMEOUT = 15.0      # seconds for a hot reload to serve the new model before falling back to a restart
VENV_GROWTH = 4            # an installed venv takes about this many times its wheels' size
LOCK_REGAIN_S = 10.0       # for the rollback's connection to take the lock the failed one held
LOCK_BUSY = 75             # flock's exit status when another deploy holds the host's lock
ANOTHER_DEPLOY = "another deploy to this host is running"

# Run with the host's Python; only old syntax, so that a too-old Python is still reported clearly.
FACTS_SCRIPT = r"""
import json, os, platform, sys
root, failed_marker, healthz_url = sys.argv[1:4]
probe = root
while not os.path.exists(probe):
    probe = os.path.dirname(probe)
disk = os.statvfs(probe)
def listing(path):
    return sorted(n for n in os.listdir(path) if not n.startswith(".")) if os.path.isdir(path) else []
def link(path):
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None
try:
    with open(os.path.join(root, "current", "manifest.json")) as f:
        manifest = json.load(f)
except (OSError, ValueError):
    manifest = None
healthz = None
if manifest is not None:   # the daemon's answer now, so that deciding to skip or hot-reload needs no other call
    from urllib.request import urlopen
    try:
        healthz = json.loads(urlopen(healthz_url, timeout=3).read().decode())
    except Exception:
        pass
os_release = {}
if os.path.exists("/etc/os-release"):
    for line in open("/etc/os-release"):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            os_release[k] = v.strip('"')
try:
    import venv, ensurepip
    has_venv = True
except ImportError:
    has_venv = False
releases = listing(os.path.join(root, "releases"))
failed = [r for r in releases if os.path.exists(os.path.join(root, "releases", r, failed_marker))]
venvs = [n for n in listing(os.path.join(root, "venvs")) if os.path.exists(os.path.join(root, "venvs", n, ".complete"))]
print(json.dumps({
    "machine": platform.machine(), "os": os_release.get("PRETTY_NAME", platform.system()),
    "python": list(sys.version_info[:2]), "glibc": platform.libc_ver()[1], "free": disk.f_bavail * disk.f_frsize,
    "current": link(os.path.join(root, "current")), "manifest": manifest, "releases": releases,
    "venv_of": dict((r, link(os.path.join(root, "releases", r, "venv"))) for r in releases), "venvs": venvs,
    "failed": failed, "healthz": healthz,
    "systemd": os.path.isdir("/run/systemd/system"), "root_user": os.geteuid() == 0, "has_venv": has_venv,
    "writable": os.access(probe, os.W_OK), "probe": probe}))
"""


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
    healthz: dict | None       # what the daemon answered on /healthz during pre-flight (None: no answer)

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


class Interrupted(DeployError):
    """Ctrl-C stopped a host's deploy at a stage boundary before the switch: nothing live changed."""


@dataclass
class Interrupt:
    """Ctrl-C during a fleet run, as the hosts' deploys see it: `requested` once it came; `stage_of` says
    where each host's deploy is, for the report if they are abandoned."""

    requested: threading.Event = field(default_factory=threading.Event)
    stage_of: dict[str, str] = field(default_factory=dict)


SAFE_TO_STOP = ("preflight", "build", "upload", "verify", "venv", "switch")   # when entered, nothing live changed


@dataclass
class Options:
    """Everything a host's deploy needs besides the host."""

    model: Path
    model_info: dict
    builder: Builder
    open_remote: Callable[[Host], Remote]
    staging: Path                                  # where each host's release is laid out before upload
    keep: int = 3
    health_timeout: float = 60.0
    say: Callable[[str], None] = print
    interrupt: Interrupt = field(default_factory=Interrupt)


class HostSteps:
    """The remote steps on one host, over one Remote."""

    def __init__(self, host: Host, remote: Remote) -> None:
        self.host = host
        self.remote = remote
        self.layout = Layout(host.root)
        self.facts: Facts | None = None
        self.service = None

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
        arguments = quote(self.host.root, FAILED_MARKER, self.healthz_url)
        command = check + f"{quote(self.host.python, '-c', FACTS_SCRIPT)} {arguments}"
        shown = check + f"{shlex.quote(self.host.python)} -c '<deploy/steps.py FACTS_SCRIPT>' {arguments}"
        output = self.remote.run(command, dry_output=json.dumps(DRY_RUN_FACTS), shown=shown)
        data = json.loads(output)
        data["python"] = tuple(data["python"])
        self.facts = Facts(**data)
        self.service = service_for(self.host.service, self.layout, self.host.python,
                                   systemd=self.facts.systemd, root_user=self.facts.root_user)
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

    def verify(self, bundle: Bundle, key: str, with_wheelhouse: bool) -> None:
        """The checksums of what was uploaded, on the host; a verified wheelhouse moves to its place."""
        check = "sha256sum --quiet --strict -c SHA256SUMS"
        command = f"cd {quote(self.layout.incoming(bundle.version))} && {check}"
        if with_wheelhouse:
            wheels = self.layout.wheelhouse(key)
            command += (f" && cd {quote(wheels + '.incoming')} && {check} && cd / && rm -rf {quote(wheels)} && "
                        f"mv -T {quote(wheels + '.incoming')} {quote(wheels)}")
        self.remote.run(command)

    def install(self, bundle: Bundle, wheel_name: str, wheelhouse: Wheelhouse, with_venv: bool) -> None:
        """Build the venv if asked, then finish the release: link the venv, unpack the wheel into `lib/`, and
        move the release into place under its version. One command: one round trip."""
        incoming = self.layout.incoming(bundle.version)
        finish = (f"cd {quote(incoming)} && ln -sfn {quote('../../venvs/' + wheelhouse.key)} venv && "
                  f"{quote(self.host.python, '-m', 'zipfile', '-e', wheel_name, 'lib')} && cd / && "
                  f"mv -T {quote(incoming)} {quote(self.layout.release(bundle.version))}")
        venv = self._venv_command(wheelhouse.key, wheelhouse.installer) + " && " if with_venv else ""
        self.remote.run(venv + finish)

    def _venv_command(self, key: str, installer: str) -> str:
        """A venv with the wheelhouse's requirements, installed offline by the pip wheel in the wheelhouse,
        without byte-compiling (the daemon compiles what it imports); marked complete only at the end."""
        venv, wheels = self.layout.venv(key), self.layout.wheelhouse(key)
        create = quote(self.host.python, "-m", "venv", "--without-pip", "--system-site-packages", venv)
        install = quote(f"{venv}/bin/python", f"{wheels}/{installer}/pip", "install", "-q", "--no-compile",
                        "--no-index", "--disable-pip-version-check", "--find-links", wheels,
                        "-r", f"{wheels}/requirements.txt")
        return (f"rm -rf {quote(venv)} && {create} && PIP_CONFIG_FILE=/dev/null {install} && "
                f"touch {quote(venv + '/.complete')} && rm -rf {quote(wheels)}")

    def activate(self, version: str, timeout: float) -> dict:
        """Point `current` at `version`, restart the daemon, wait until it is healthy with that model."""
        self.remote.run(self.layout.switch(version))
        self.restart()
        return self.wait_healthy(timeout)

    def can_hot_reload(self, bundle: Bundle) -> bool:
        """Whether the running daemon can take `bundle` without a restart: it was healthy at pre-flight, and the
        new release differs from the live one only in its model (same wheel, venv and daemon options), so the
        daemon, which reads its model through `current`, reloads it when `current` switches."""
        def all_but_model(manifest: dict | None) -> tuple | None:
            if manifest is None:
                return None
            files = {name: digest for name, digest in manifest["files"].items() if name != MODEL_NAME}
            return manifest.get("venv"), files
        live = all_but_model(self.facts.manifest)
        return live is not None and live == all_but_model(bundle.manifest()) and self.facts.serving_current

    @property
    def healthz_url(self) -> str:
        """The daemon's /healthz as seen on the host (it listens on localhost unless configured otherwise)."""
        bind, _, port = self.host.daemon.http.rpartition(":")
        address = "127.0.0.1" if bind in ("", "0.0.0.0", "::", "[::]", "*") else bind
        return f"http://{address}:{port}/healthz"

    def restart(self) -> None:
        for command in self.service.restart():
            self.remote.run(command)

    def wait_healthy(self, timeout: float) -> dict:
        """The daemon's /healthz, asked on the host; raises DeployError (with the log's last line) if unhealthy."""
        current = self.layout.current
        command = quote(self.host.python, f"{current}/{HOST_SCRIPTS}/health.py",
                        "--url", self.healthz_url, "--manifest", f"{current}/manifest.json",
                        "--timeout", timeout, *self.service.health_args())
        # health.py exits 1 when unhealthy, with its answer on stdout; what it says on stderr is why it could not run.
        output = self.remote.run(command + " 2>&1 || true", dry_output='{"healthy": true, "healthz": {}}')
        lines = output.strip().splitlines() or ["no output"]
        try:
            answer = json.loads(lines[-1])
        except ValueError:
            raise DeployError(f"the health check could not run on the host: {lines[-1].strip()}") from None
        if not answer["healthy"]:
            raise DeployError(answer["reason"] + self._last_log_line())
        return answer["healthz"]

    def _last_log_line(self) -> str:
        try:
            lines = self.remote.run(self.service.logs(20) + " 2>/dev/null || true").strip().splitlines()
        except DeployError:
            return ""
        errors = [line for line in lines if "error" in line.lower()]
        return f"; log: {(errors or lines)[-1].strip()}" if lines else ""

    def mark_failed(self, version: str, reason: str) -> None:
        """Record on the host that `version` failed, so pruning drops it first and rollbacks skip it."""
        self.remote.run(f"printf '%s\\n' {quote(reason)} > {quote(self.layout.failed_marker(version))}")

    def clear_failed(self, version: str) -> None:
        self.remote.run(quote("rm", "-f", self.layout.failed_marker(version)))

    def stop_and_clear(self) -> None:
        """After a failed first deploy: no earlier release to return to, so nothing stays live."""
        for command in self.service.stop():
            self.remote.run(command)
        self.remote.run(quote("rm", "-f", self.layout.current))

    def prune(self, keep: int, current: str, venv: str) -> None:
        """Delete old releases and unused venvs; `current` (using `venv`) may be newer than the facts."""
        releases = sorted(set(self.facts.releases) | {current})
        venv_of = {**self.facts.venv_of, current: venv}
        old_releases, old_venvs = to_prune(releases, venv_of, self.facts.venvs, keep, current, self.facts.failed)
        doomed = [self.layout.release(r) for r in old_releases] + [self.layout.venv(v) for v in old_venvs]
        leftovers = f"{quote(self.layout.releases)}/.incoming-* {quote(self.layout.root)}/wheelhouses/*.incoming"
        self.remote.run(f"rm -rf {quote(*doomed) if doomed else ''} {leftovers}")


class Stages:
    """Where a host's deploy is, and the seconds each stage took (for the report's detail and benchmarks);
    entering a stage before the switch stops the deploy if Ctrl-C came."""

    def __init__(self, host: str, interrupt: Interrupt) -> None:
        self.name, self.started, self.seconds = "connect", time.monotonic(), {}
        self.host, self.interrupt = host, interrupt

    def enter(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[self.name] = round(self.seconds.get(self.name, 0.0) + now - self.started, 3)
        self.name, self.started = name, now
        self.interrupt.stage_of[self.host] = name
        if name in SAFE_TO_STOP and self.interrupt.requested.is_set():
            raise Interrupted("interrupted (Ctrl-C) before this stage: nothing live changed", stage=name)


def deploy_host(host: Host, options: Options) -> HostResult:
    """Deploy to one host; never raises: every failure becomes the result's stage and one-line reason."""
    result = HostResult(host.name)
    started = time.monotonic()
    steps: HostSteps | None = None
    stages = Stages(host.name, options.interrupt)
    switched = False
    say = lambda text: options.say(f"[{host.name}] {text}")  # noqa: E731
    try:
        steps = HostSteps(host, options.open_remote(host))
        stages.enter("preflight")
        steps.lock()
        facts = steps.read_facts()
        result.old = result.new = facts.current
        steps.check_can_run()
        say(f"{facts.os}, {facts.machine}, Python {facts.python[0]}.{facts.python[1]}, "
            f"current release {facts.current or 'none'}")
        stages.enter("build")
        wheel = options.builder.wheel()
        wheelhouse = options.builder.wheelhouse(facts.target)
        version = new_version(options.model_info["sha256"], facts.releases)
        bundle = stage(host, options.model, options.model_info, wheel, wheelhouse,
                       options.staging / host.name / version, version)
        if bundle.identity == facts.identity:
            stages.enter("health")
            if facts.serving_current:
                result.status = SKIPPED
                return result
            say("already current but not healthy: restarting")
            steps.restart()
            steps.wait_healthy(options.health_timeout)
            result.status, result.reason = OK, "was current but not healthy: restarted"
            return result
        need_venv = wheelhouse.key not in facts.venvs
        wheel_files = [] if not need_venv else [wheelhouse.path / "*"] if steps.remote.dry_run else wheelhouse.files()
        stages.enter("preflight")
        steps.check_disk(bundle, sum(p.stat().st_size for p in wheel_files if p.is_file()))
        stages.enter("upload")
        say(f"uploading {bundle.version}" + (" and the wheelhouse" if need_venv else ""))
        steps.upload(bundle, wheel_files, wheelhouse.key)
        stages.enter("verify")
        steps.verify(bundle, wheelhouse.key, with_wheelhouse=need_venv)
        stages.enter("venv")
        if need_venv:
            say("building the venv (first deploy or new requirements)")
        steps.install(bundle, wheel.name, wheelhouse, with_venv=need_venv)
        stages.enter("switch")
        reload = steps.can_hot_reload(bundle)
        switched = True
        steps.remote.run(steps.layout.switch(bundle.version))
        result.new = bundle.version
        if reload:
            stages.enter("reload")
            say("waiting for the daemon to reload the model")
            try:
                steps.wait_healthy(min(RELOAD_TIMEOUT, options.health_timeout))
            except DeployError as error:   # e.g. the new model does not load: the daemon kept the old one
                say(f"the hot reload did not serve the new model ({error}): restarting")
                reload = False
        if not reload:
            stages.enter("restart")
            steps.restart()
            stages.enter("health")
            say("waiting for /healthz")
            steps.wait_healthy(options.health_timeout)
        stages.enter("prune")
        steps.prune(options.keep, bundle.version, wheelhouse.key)
        result.status = DRY_RUN if steps.remote.dry_run else OK
    except Exception as error:  # noqa: BLE001 - the report carries one line per host, never a traceback
        result.status = INTERRUPTED if isinstance(error, Interrupted) else FAILED
        result.reason = reason_for(error, steps)
        result.stage = "connect" if isinstance(error, ConnectError) else stages.name
        if switched:
            stages.enter("rollback")
            _roll_back(host, options, steps, result, bundle.version)
    finally:
        if steps is not None:
            steps.remote.close()
        stages.enter("done")
        result.seconds = round(time.monotonic() - started, 2)
        result.detail = {"stages": stages.seconds}
    return result


def _roll_back(host: Host, options: Options, failed: HostSteps, result: HostResult, version: str) -> None:
    """Mark `version` failed and switch back to the release that was current, over a fresh connection (the
    old one may be gone)."""
    failed.remote.close()           # which lets go of the deploy lock: taken again below, once sshd released it
    try:
        steps = HostSteps(host, options.open_remote(host))
        steps.lock(wait=LOCK_REGAIN_S)
        steps.read_facts()
        try:
            steps.mark_failed(version, f"{result.stage}: {result.reason}")
            if result.old is None:
                steps.stop_and_clear()
                result.new = None
                result.reason += "; no earlier release to return to: daemon stopped"
                return
            steps.activate(result.old, options.health_timeout)
            result.status, result.new = ROLLED_BACK, result.old
        finally:
            steps.remote.close()
    except Exception as error:  # noqa: BLE001
        result.reason += f"; rollback failed too: {reason_for(error, None)}"


def reason_for(error: BaseException, steps: HostSteps | None) -> str:
    """The one line a report shows for a failure."""
    if isinstance(error, DeployError):
        return str(error)
    return describe_ssh_error(error, steps.remote.conn if steps is not None else None)

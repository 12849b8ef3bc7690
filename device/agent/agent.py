"""The agent's loop: poll the channel, decide, fetch what is missing, install, report.

Every refusal leaves the device on the release it runs, with the reason in the status file and the log.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import random
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from device.agent import fetch, mqtt
from device.agent.install import install
from device.agent.manifest import RELEASE_FILES, WHEELHOUSE, Channel, ManifestError, verify
from device.agent.rollout import in_rollout
from device.agent.state import STATE_DIR, State, Status, now_iso, prove, proven
from device.digest import sha256_file
from device.errors import UserError, one_line

log = logging.getLogger("bloomkit.agent")

MAX_BACKOFF_S = 3600
DISK_MARGIN = 64 << 20
VENV_GROWTH = 4            # an installed venv takes about this many times its wheels' size (as fab deploy reckons)
DEPLOY_LOCK = ".deploy.lock"   # under the root: held by `fab deploy` (deploy/host/layout.py) and by the agent
LOCK_WAIT_S = 300              # for a push deploy to finish before this poll gives up (tried again at the next)
LAUNCHER = "agent/run-agent"   # under the root: written by install.py agent-install, runs the current release's agent


class Refused(UserError):
    """The channel offers something this device will not install; it stays on its release."""


class Busy(UserError):
    """Another deploy (a push) holds the root's deploy lock: nothing was touched, the next poll tries again."""


@dataclass
class AgentConfig:
    channel_url: str                      # …/channels/<name>.json; the store's objects are beside channels/
    trusted: dict[str, bytes]             # key id → raw Ed25519 public key
    root: Path                            # the deploy root (releases/, current, venvs/, data/, agent-state/)
    device_id: str
    daemon_http: str = "127.0.0.1:8080"   # where this device's daemon answers /healthz
    interval: float = 300.0
    jitter: float = 0.1                   # each wait is interval × (1 ± jitter): a fleet does not poll in step
    mqtt: str | None = None
    health_timeout: float = 60.0
    python: str = "python3"               # the host's Python, as `fab deploy` uses it
    machine: str = field(default_factory=platform.machine)
    python_version: tuple[int, int] = tuple(sys.version_info[:2])
    glibc: tuple[int, int] = field(default_factory=lambda: tuple(
        int(n) for n in (platform.libc_ver()[1] or "0.0").split(".")[:2]))

    @property
    def agent_dir(self) -> Path:
        """State, status, staging: the agent's own, out of the daemon's reach (not in data/)."""
        return self.root / STATE_DIR

    @property
    def store_url(self) -> str:
        return self.channel_url.rsplit("/channels/", 1)[0]


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.dir = config.agent_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = State.load(self.dir / "state.json")
        self.status = Status(config.device_id, config.channel_url.rsplit("/", 1)[-1].removesuffix(".json"),
                             release=self.state.release or None)
        self.status.carry_over(self.dir / "status.json")
        self._reported: Status | None = None
        self.failures_in_a_row = 0
        code = code_release(config.root)
        self.status.agent_version = code.name if code else None
        self.code_wheel = _wheel_digest(code) if code else None     # the device package this process runs
        self.restart_wanted = False     # an installed release changed the device package: run its code instead
        self.proven = proven(self.dir)   # the release whose agent code last proved itself (agent_trial.py)

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Check, wait the interval (with jitter, longer while the store is down), until `stop` is set or an
        installed release brings new agent code (`restart_wanted`: the caller starts that)."""
        while not stop.is_set():
            self.check()
            if self.restart_wanted:
                return
            stop.wait(self.next_wait())

    def next_wait(self) -> float:
        """The poll interval with jitter; after the store was down, doubling up to an hour."""
        base = min(self.config.interval * 2 ** self.failures_in_a_row, max(MAX_BACKOFF_S, self.config.interval))
        return base * random.uniform(1 - self.config.jitter, 1 + self.config.jitter)

    def check(self) -> str:
        """One poll and whatever it leads to; returns the state reported."""
        self.status.last_check = now_iso()
        try:
            self._check()
            self.failures_in_a_row = 0
        except fetch.StoreDown as error:
            self.failures_in_a_row += 1
            self._set("store-down", str(error))
        except Busy as error:
            self._set("waiting", str(error))
        except (Refused, ManifestError, fetch.DownloadError, fetch.DiskFull) as error:
            self._set("refused", str(error))
        except OSError as error:             # the device's own disk or files
            self._set("refused", f"{one_line(error)}")
        self._observe_current()
        self._report()
        self._prove()
        return self.status.state

    def _prove(self) -> None:
        """Record that the release `current` points at has agent code that runs: this code, which has come
        through a poll (whatever the store answered) or to an install. Its launcher's trial of that release is
        over, and it is where the launcher goes back to if a later release's agent never gets this far.

        The trial's watcher proves a release on trial by itself (it sees the status file rewritten), which
        covers agents too old to call this; this is still needed for what no trial watches: a model-only
        release this agent installs (no restart), and, just before an install, the release being replaced.
        `current` is read once, so a push switching it meanwhile cannot have one release's code prove another.
        A full disk is logged and tried again at the next poll: it must not crash the agent (a crash would
        count against its own trial)."""
        current = self.config.root / "current"
        try:
            name = os.path.basename(os.readlink(current))
        except OSError:
            return
        if self.code_wheel is None or _wheel_digest(self.config.root / "releases" / name) != self.code_wheel:
            return
        proof = {"version": name, "release": self.state.release}
        if proof != self.proven:
            try:
                prove(self.dir, **proof)
            except OSError as error:
                log.warning("could not record that release %s's agent runs (trying again at the next poll): %s",
                            name, one_line(error))
                return
            self.proven = proof

    def _set(self, state: str, error: str | None) -> None:
        self.status.state, self.status.last_error = state, error
        if error:
            log.warning("%s: %s", state, error)

    def _check(self) -> None:
        c = self.config
        poll = fetch.get_channel(c.channel_url, self.state.etag, self.state.last_modified)
        if poll.data is None:                            # unchanged: one 304, nothing else
            if self.status.state in ("starting", "installed"):
                self._set("idle", None)
            return
        channel = verify(poll.data, c.trusted)
        self.status.offered_release = channel.release
        serial = channel.payload.get("serial", 0)
        if serial < self.state.serial:
            raise Refused(f"manifest serial {serial} is below {self.state.serial}, already seen: a replay, refused")
        self.state.serial = serial
        self._decide(channel)
        self.state.etag, self.state.last_modified = poll.etag, poll.last_modified   # acted on: 304s from now
        self.state.save(self.dir / "state.json")

    def _decide(self, channel: Channel) -> None:
        c = self.config
        installed = self.state.release
        if channel.release < installed:
            raise Refused(f"release {channel.release} is not above the installed {installed}: a downgrade or "
                          "replay, refused (a rollback is published as a new, higher release)")
        if channel.release == installed:
            self._set("idle", None)
            return
        if str(channel.release) in self.state.failed:
            self._set("failed", f"release {channel.release} failed here: {self.state.failed[str(channel.release)]}; "
                                "waiting for a newer one")
            self.status.failed_release = channel.release
            return
        if channel.rollout.get("halted"):
            self._set("waiting", None)
            return
        if not in_rollout(c.device_id, channel.rollout["percent"]):
            self._set("waiting", None)
            return
        target = channel.target(c.machine, c.python_version, c.glibc)
        if target is None:
            built = ", ".join(f"{t['machine']} Python {t['python'][0]}.{t['python'][1]} glibc "
                              f"{t['glibc'][0]}.{t['glibc'][1]}" for t in channel.payload["targets"])
            raise Refused(f"release {channel.release} has no build for {c.machine} Python "
                          f"{c.python_version[0]}.{c.python_version[1]} glibc {c.glibc[0]}.{c.glibc[1]} "
                          f"(built for: {built})")
        self._install(channel, target)

    # --- fetching and installing ------------------------------------------------------------------
    def _install(self, channel: Channel, target: dict) -> None:
        self._prove()          # before `current` moves on: where a failing new agent comes back to
        c, root = self.config, self.config.root
        version = channel.version
        need_venv = not (root / "venvs" / target["venv"] / ".complete").is_file()
        wanted = dict(target[RELEASE_FILES])
        wheels = dict(target[WHEELHOUSE]) if need_venv else {}
        objects = self.dir / "objects"
        objects.mkdir(exist_ok=True)
        local = self._local_files()
        missing = {f["sha256"]: f["size"] for f in [*wanted.values(), *wheels.values()]
                   if f["sha256"] not in local and not (objects / f["sha256"]).is_file()}
        self._check_disk(sum(missing.values()), sum(f["size"] for f in wheels.values()))
        self._set("downloading", None)
        for digest, size in missing.items():
            fetch.download(f"{c.store_url}/objects/{digest}", objects / digest, digest, size)
        with self._deploy_lock():      # a push's prune would remove what is placed here
            incoming = root / "releases" / f".incoming-{version}"
            shutil.rmtree(incoming, ignore_errors=True)
            incoming.mkdir(parents=True)
            for name, f in wanted.items():
                self._place(f["sha256"], incoming / name, local, objects)
            (incoming / "run-daemon").chmod(0o755)
            if wheels:
                house = root / "wheelhouses" / target["venv"]
                shutil.rmtree(house, ignore_errors=True)
                house.mkdir(parents=True)
                for name, f in wheels.items():
                    self._place(f["sha256"], house / name, local, objects)
            wheel = next(name for name in wanted if name.endswith(".whl"))
            self._set("installing", None)
            answer = install(root, version, wheel, f"http://{c.daemon_http}/healthz", c.health_timeout,
                             self.dir, python=c.python)
        shutil.rmtree(objects, ignore_errors=True)
        if answer["ok"]:
            self.state.release, self.state.version = channel.release, version
            self.status.release, self.status.failed_release = channel.release, None
            self._set("installed", None)
            how = "the daemon reloaded its model" if answer.get("reloaded") else answer.get("reason") or "restarted"
            log.info("installed release %d (%s): %s", channel.release, version, how)
            if self.code_wheel is not None and wanted[wheel]["sha256"] != self.code_wheel:
                self._restart_on(channel.release)
            return
        reason = f"{answer.get('stage')}: {answer.get('reason')}"
        self.state.failed[str(channel.release)] = reason
        self.status.failed_release = channel.release
        rolled_back = answer.get("new") is not None and answer.get("stage") != "install"
        self._set("rolled-back" if rolled_back else "failed", f"release {channel.release}: {reason}")

    def _restart_on(self, release: int) -> None:
        """Ask for a restart through the launcher, which runs `current`'s code: once, as the code it starts
        comes from the release just installed."""
        if self.launcher.is_file():
            log.info("release %d changes the device package: the agent restarts on its code", release)
            self.restart_wanted = True
        else:
            log.warning("release %d changes the device package: restart the agent to run its code", release)

    @property
    def launcher(self) -> Path:
        """What starts the agent where `fab deploy` installed it (systemd's ExecStart, the pidfile manager's)."""
        return self.config.root / LAUNCHER

    @contextlib.contextmanager
    def _deploy_lock(self):
        """The root's deploy lock, as `fab deploy` takes it (flock): one install at a time, pushed or pulled."""
        with open(self.config.root / DEPLOY_LOCK, "a") as lock:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy("another deploy to this host is running: trying again at the next poll") from None
                    time.sleep(1)
            yield

    def _local_files(self) -> dict[str, Path]:
        """sha256 → a file of the current release with that content: copied, not downloaded again."""
        current = self.config.root / "current"
        try:
            manifest = json.loads((current / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        return {digest: current / name for name, digest in manifest.get("files", {}).items()}

    @staticmethod
    def _place(digest: str, destination: Path, local: dict[str, Path], objects: Path) -> None:
        """Copy a verified file into place, a download or else the current release's copy, and check it again
        there, where only the agent writes: what is installed is what the manifest signed, whatever happened
        to the file after its first check."""
        downloaded = objects / digest
        shutil.copyfile(downloaded if downloaded.is_file() else local[digest], destination)
        if sha256_file(destination) != digest:
            raise fetch.DownloadError(f"{destination.name} changed on disk after it was checked: refused")

    def _check_disk(self, download_bytes: int, wheel_bytes: int) -> None:
        objects = self.dir / "objects"
        free = min(_free(self.config.root), _free(objects))
        needed = download_bytes + wheel_bytes * VENV_GROWTH + DISK_MARGIN
        if free < needed:
            raise fetch.DiskFull(f"disk too full: {free >> 20} MB free, this release needs {needed >> 20} MB")

    # --- reporting ----------------------------------------------------------------------------------
    def _observe_current(self) -> None:
        """The release `current` points at and what the daemon says now (one local request)."""
        current = self.config.root / "current"
        self.status.version = os.path.basename(os.readlink(current)) if current.is_symlink() else None
        try:
            with urllib.request.urlopen(f"http://{self.config.daemon_http}/healthz", timeout=2) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = _json_or_none(error)
        except (OSError, ValueError):
            body = None
        self.status.health = "unknown" if body is None else "ok" if body.get("status") == "ok" else "unhealthy"
        self.status.model_sha256 = ((body or {}).get("model") or {}).get("sha256")

    def _report(self) -> None:
        self.status.write(self.dir / "status.json")
        if self.config.mqtt and self.status.changed_from(self._reported):
            try:
                mqtt.publish_retained(self.config.mqtt, self.config.device_id, self.status.as_report())
                self._reported = replace(self.status)
            except mqtt.MqttError as error:
                log.warning("report not sent: %s", error)


def code_release(root: Path) -> Path | None:
    """The release under `root` whose code this process runs (its lib/ on the path, as the agent's launcher
    sets it), or None when run from elsewhere (a checkout, a venv): then there is no newer code to restart on."""
    import device

    release = Path(device.__file__).resolve().parents[2]          # <release>/lib/device/__init__.py
    return release if release.parent == (root / "releases").resolve() else None


def _wheel_digest(release: Path) -> str | None:
    """The sha256 of a release's device package (its wheel), from its manifest."""
    try:
        files = json.loads((release / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return next((digest for name, digest in files.items() if name.endswith(".whl")), None)


def _free(path: Path) -> int:
    stat = os.statvfs(path if path.exists() else path.parent)
    return stat.f_bavail * stat.f_frsize


def _json_or_none(error) -> dict | None:
    try:
        return json.loads(error.read())
    except (OSError, ValueError):
        return None

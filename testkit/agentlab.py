"""Devices for the agent tests and benchmarks/ota_pull.py: a deploy root on this machine with its daemon running (first installed by
`fab deploy` over a real sshd, or by the agent itself), and the agent pointed at a store nginx serves."""
from __future__ import annotations

import json
import platform
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from deploy.build import Builder
from deploy.inventory import Host
from deploy.keys import signer
from deploy.publish import change_rollout, parse_target, publish_release
from deploy.stores import open_store
from device.agent.agent import Agent, AgentConfig
from device.agent.state import STATE_DIR

# What this machine's loopback "devices" run: the build `fab publish --target` makes for them.
THIS_TARGET = f"{platform.machine()}-cp{sys.version_info[0]}{sys.version_info[1]}-glibc2.36"


def healthz(http: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{http}/healthz", timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)
    except OSError:
        return None


def serving(http: str) -> str | None:
    """The sha256 of the model the daemon at `http` serves while healthy, else None."""
    body = healthz(http)
    return body["model"]["sha256"] if body and body.get("status") == "ok" else None


def publish(store: Path, model: Path, builder, key: Path, *, target: str = THIS_TARGET, **options):
    opened = open_store(str(store))
    try:
        return publish_release(opened, signer(key), model=model, channel="stable", builder=builder,
                               targets=[parse_target(target)], daemon_host=Host("published"), say=lambda _: None,
                               **options)
    finally:
        opened.close()


def set_rollout(store: Path, key: Path, percent: float, reports=lambda: []):
    opened = open_store(str(store))
    try:
        return change_rollout(opened, signer(key), channel="stable", percent=percent, halt=False, max_failures=0,
                              reports=reports, say=lambda _: None)
    finally:
        opened.close()


def changed_package(source: Path, builder: Builder, folder: Path, line: str = "# a newer agent") -> Builder:
    """A builder for the same sources but for one line added to the agent's code (device/agent/__init__.py): a
    different device wheel, with the same requirements (the venv is reused), sharing the session's cache."""
    shutil.copytree(source, folder)
    with open(folder / "device" / "agent" / "__init__.py", "a") as file:
        file.write(line + "\n")
    return Builder(builder.cache_dir, repo=folder)


def agent_for(host: Host, channel_url: str, trusted: dict, **options) -> Agent:
    """An agent for a lab host's root, its daemon's options kept in the root's data/daemon.args."""
    root = Path(host.root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    args = ["--http", host.daemon.http, "--source", host.daemon.source, *host.daemon.args]
    (root / "data" / "daemon.args").write_text("".join(a + "\n" for a in args))
    config = AgentConfig(channel_url=channel_url, trusted=trusted, root=root, device_id=host.name,
                         daemon_http=host.daemon.http, python=host.python, **options)
    return Agent(config)


def read_status(root: Path) -> dict:
    """A device's agent status file ({} before the first check)."""
    try:
        return json.loads((root / STATE_DIR / "status.json").read_text())
    except (OSError, ValueError):
        return {}


class AgentFleet:
    """Device roots on this machine, each with its own daemon options (HTTP port, a folder of photos at
    `fps`), optionally sharing one prebuilt venv (devices flashed from one image), and an agent process per
    device started with `start(channel_url, …)`; `close()` ends agents and daemons."""

    def __init__(self, base: Path, names: list[str], photos: Path, *, venv: Path | None = None,
                 fps: float = 1.0) -> None:
        from testkit.processes import free_port

        self.roots, self.https, self.agents = {}, {}, []
        for name in names:
            root = base / name
            (root / "data").mkdir(parents=True)
            if venv is not None:
                (root / "venvs").mkdir()
                (root / "venvs" / venv.name).symlink_to(venv)
            self.https[name] = f"127.0.0.1:{free_port()}"
            args = ("--http", self.https[name], "--source", f"folder:{photos}", "--source-fps", f"{fps:g}")
            (root / "data" / "daemon.args").write_text("".join(a + "\n" for a in args))
            self.roots[name] = root

    def start(self, channel_url: str, public_key: Path, *, interval: float, mqtt: str | None = None,
              names: list[str] | None = None) -> None:
        import subprocess

        for name in names or list(self.roots):
            root = self.roots[name]
            log = open(root / "agent.log", "ab")
            command = [sys.executable, "-m", "device.cli", "agent", "--channel", channel_url, "--trust",
                       str(public_key), "--root", str(root), "--device-id", name, "--daemon-http", self.https[name],
                       "--interval", str(interval), "--python", "/usr/bin/python3", "--health-timeout", "60"]
            self.agents.append(subprocess.Popen(command + (["--mqtt", mqtt] if mqtt else []), stdout=log, stderr=log))

    def status(self, name: str) -> dict:
        return read_status(self.roots[name])

    def on(self, release: int, names: list[str]) -> list[str]:
        """Which of `names` report `release` installed and healthy."""
        return [n for n in names if self.status(n).get("release") == release and self.status(n).get("health") == "ok"]

    def close(self) -> None:
        from testkit.sshlab import stop_daemon

        for agent in self.agents:
            agent.terminate()
        for agent in self.agents:
            agent.wait(30)
        for root in self.roots.values():
            stop_daemon(root)

"""Devices for the agent tests: a deploy root on this machine with its daemon running (first installed by
`fab deploy` over a real sshd, or by the agent itself), and the agent pointed at a store nginx serves."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from deploy.inventory import Host
from deploy.keys import signer
from deploy.publish import change_rollout, parse_target, publish_release
from deploy.stores import open_store
from device.agent.agent import Agent, AgentConfig
from tests.ota.conftest import THIS_TARGET


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


def agent_for(host: Host, channel_url: str, trusted: dict, **options) -> Agent:
    """An agent for a lab host's root, its daemon's options kept in the root's data/daemon.args."""
    root = Path(host.root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    args = ["--http", host.daemon.http, "--source", host.daemon.source, *host.daemon.args]
    (root / "data" / "daemon.args").write_text("".join(a + "\n" for a in args))
    config = AgentConfig(channel_url=channel_url, trusted=trusted, root=root, device_id=host.name,
                         daemon_http=host.daemon.http, python=host.python, **options)
    return Agent(config)

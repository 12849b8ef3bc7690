"""The agent installs with the release's own host-side install path (the one `fab deploy` runs over SSH): a
pushed device pulls a model-only release (only the new files travel, the model resumed with Range after a
cut), then a release whose model no runtime can load, which is rolled back, reported, and not tried again."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deploy.build import sha256_file
from tests.ota.test_agent_refuses import device  # noqa: F401 - the pushed device, shared with the refusals
from testkit.agentlab import agent_for, publish, serving, set_rollout
from testkit.webservers import CuttingProxy

pytestmark = pytest.mark.slow


def bytes_served(access_log: Path) -> dict[str, int]:
    """Path → bytes sent, from nginx's combined access log."""
    sent = {}
    for line in access_log.read_text().splitlines():
        request, status_and_size = line.split('"')[1], line.split('"')[2].split()
        sent[request.split()[1]] = sent.get(request.split()[1], 0) + int(status_and_size[1])
    return sent


def test_a_pushed_device_pulls_a_model_only_release_then_rolls_back_a_broken_one(device, tmp_path, nginx, models,
                                                                                  builder, signing_key, trusted):
    store = tmp_path / "store"
    published = publish(store, models.second, builder, signing_key)
    server = nginx(store)
    # Between the agent and nginx, a link that drops once, halfway through the model.
    proxy = CuttingProxy(server.port, cut_after=models.second.stat().st_size // 2)
    agent = agent_for(device, f"{proxy.url}/channels/stable.json", trusted)
    try:
        assert agent.check() == "installed", agent.status
    finally:
        proxy.close()
    model_requests = [r for r in proxy.requests if sha256_file(models.second).encode() in r]
    assert len(model_requests) == 2 and b"Range: bytes=" in model_requests[1]
    assert serving(device.daemon.http) == sha256_file(models.second)
    status = json.loads((Path(device.root) / "data" / "agent" / "status.json").read_text())
    assert (status["release"], status["version"], status["health"]) == (1, published.version, "ok")
    sent = bytes_served(tmp_path / "nginx-0" / "access.log")
    log = (tmp_path / "nginx-0" / "access.log").read_text()
    assert f'"GET /objects/{sha256_file(models.second)} HTTP/1.1" 206' in log      # the rest, resumed
    fetched = {path.rsplit("/", 1)[-1] for path in sent if path.startswith("/objects/")}
    channel = json.loads(json.loads((store / "channels" / "stable.json").read_text())["payload"])
    release_files = channel["targets"][0]["release"]
    # The wheel is the pushed release's: copied on the device, not downloaded; no wheelhouse (venv reused).
    assert release_files[next(n for n in release_files if n.endswith(".whl"))]["sha256"] not in fetched
    assert fetched <= {f["sha256"] for f in release_files.values()}
    assert release_files["model.tflite"]["sha256"] in fetched
    assert proxy.passed < models.second.stat().st_size + 100_000      # everything, the cut included

    agent.config.channel_url = f"{server.url}/channels/stable.json"
    assert agent.check() == "idle"                       # one 304 and nothing else
    assert bytes_served(tmp_path / "nginx-0" / "access.log")["/channels/stable.json"] == \
        sent["/channels/stable.json"]

    publish(store, models.broken, builder, signing_key)
    assert agent.check() == "rolled-back"
    assert serving(device.daemon.http) == sha256_file(models.second)
    status = json.loads((Path(device.root) / "data" / "agent" / "status.json").read_text())
    assert (status["release"], status["failed_release"], status["health"]) == (1, 2, "ok")
    assert re.search("release 2: .*", status["last_error"])
    set_rollout(store, signing_key, 100)                 # the same release 2, re-signed: read again
    assert agent.check() == "failed"                     # and not tried again: waits for a newer release
    assert "waiting for a newer one" in agent.status.last_error
    assert serving(device.daemon.http) == sha256_file(models.second)

"""The agent installs with the release's own host-side install path (the one `fab deploy` runs over SSH): a
pushed device pulls a model-only release (only the new files travel, the model resumed with Range after a
cut), then a release whose model no runtime can load, which is rolled back, reported, and not tried again.
A model-only release is hot-reloaded as `fab deploy` does it (the daemon keeps its pid), with a restart when
the reload does not serve the new model; a disk that fills up during a download is refused, and the next
poll resumes the download."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deploy.build import sha256_file
from device.agent.state import STATE_DIR
from tests.conftest import fill_disk, require
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
    status = json.loads((Path(device.root) / STATE_DIR / "status.json").read_text())
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
    status = json.loads((Path(device.root) / STATE_DIR / "status.json").read_text())
    assert (status["release"], status["failed_release"], status["health"]) == (1, 2, "ok")
    assert re.search("release 2: .*", status["last_error"])
    set_rollout(store, signing_key, 100)                 # the same release 2, re-signed: read again
    assert agent.check() == "failed"                     # and not tried again: waits for a newer release
    assert "waiting for a newer one" in agent.status.last_error
    assert serving(device.daemon.http) == sha256_file(models.second)


def daemon_pid(root: Path) -> int:
    return int((root / "run" / "daemon.pid").read_text())


def test_a_model_only_release_is_hot_reloaded_and_a_reload_that_does_not_serve_falls_back_to_a_restart(
        device, tmp_path, nginx, models, builder, signing_key, trusted, caplog):
    root = Path(device.root)
    shutil.rmtree(root / STATE_DIR, ignore_errors=True)
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key)
    agent = agent_for(device, f"{nginx(store).url}/channels/stable.json", trusted)
    assert agent.check() == "installed", agent.status         # a pulled release: the store's launcher
    pid = daemon_pid(root)

    publish(store, models.first, builder, signing_key)         # release 2: only the model differs
    with caplog.at_level(logging.INFO, logger="bloomkit.agent"):
        assert agent.check() == "installed", agent.status
    assert serving(device.daemon.http) == sha256_file(models.first)
    assert daemon_pid(root) == pid, "reloaded, not restarted"
    assert "installed release 2 (" in caplog.text and "the daemon reloaded its model" in caplog.text

    # Release 3, model-only too; the daemon stops answering the moment `current` switches (hung), so the reload
    # is never seen: after RELOAD_TIMEOUT the daemon is restarted, and the new one serves the new model.
    third = publish(store, models.second, builder, signing_key)
    switched = threading.Event()

    def hang_the_daemon_at_the_switch() -> None:
        while not switched.wait(0.005):
            if os.readlink(root / "current") == f"releases/{third.version}":
                os.kill(pid, signal.SIGSTOP)
                switched.set()
    watcher = threading.Thread(target=hang_the_daemon_at_the_switch, daemon=True)
    watcher.start()
    try:
        with caplog.at_level(logging.INFO, logger="bloomkit.agent"):
            assert agent.check() == "installed", agent.status
    finally:
        switched.set()
    assert serving(device.daemon.http) == sha256_file(models.second)
    assert daemon_pid(root) != pid
    assert "installed release 3 (" in caplog.text and "the hot reload did not serve the new model" in caplog.text
    assert agent.status.last_error is None and agent.status.health == "ok"


def test_a_disk_that_fills_up_during_a_download_is_refused_and_the_next_poll_resumes(
        device, tmp_path, nginx, models, builder, signing_key, trusted, caplog):
    require(shutil.which("mount") is not None, "mount not installed")
    root = Path(device.root)
    shutil.rmtree(root / STATE_DIR, ignore_errors=True)
    served = serving(device.daemon.http)
    model = models.first if served == sha256_file(models.second) else models.second
    store = tmp_path / "store"
    publish(store, model, builder, signing_key)
    server = nginx(store)
    # The staging area on a small file system of its own (room for the pre-flight check: the model + 64 MB),
    # which something else fills up halfway through the model's download.
    objects = root / STATE_DIR / "objects"
    objects.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(objects)], capture_output=True)
    require(mounted.returncode == 0, f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")

    part = objects / f"{sha256_file(model)}.part"

    def fill_the_disk() -> None:
        # Once the agent has written some of the model: what the proxy passed may still sit unread in socket
        # buffers (under load most of it, at times before the agent had opened its .part), and filling the disk
        # then leaves an empty .part: nothing to resume with Range.
        deadline = time.monotonic() + 30
        while not (part.is_file() and part.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.005)
        fill_disk(objects)
    proxy = CuttingProxy(server.port, cut_after=model.stat().st_size // 2, instead=fill_the_disk)
    try:
        agent = agent_for(device, f"{proxy.url}/channels/stable.json", trusted)
        with caplog.at_level(logging.WARNING, logger="bloomkit.agent"):
            assert agent.check() == "refused", agent.status
        status = json.loads((root / STATE_DIR / "status.json").read_text())
        assert "disk full while downloading" in status["last_error"] and status["health"] == "ok"
        assert "disk full while downloading" in caplog.text
        assert serving(device.daemon.http) == served                       # still on its release
        assert not list((root / "releases").glob(".incoming-*"))
        assert 0 < part.stat().st_size < model.stat().st_size              # what arrived: a prefix, kept
        assert model.read_bytes().startswith(part.read_bytes())

        (objects / "filler").unlink()                                     # room again: the next poll resumes
        assert agent.check() == "installed", agent.status
        assert serving(device.daemon.http) == sha256_file(model)
        log = (tmp_path / "nginx-0" / "access.log").read_text()
        assert f'"GET /objects/{sha256_file(model)} HTTP/1.1" 206' in log
    finally:
        proxy.close()
        subprocess.run(["umount", str(objects)], check=True)

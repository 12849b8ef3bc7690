"""Every bad input the agent can meet, each refused with its reason in the status file, and the device still
serving the model it had: a device first deployed by `fab deploy` over a real sshd, then pointed at a store
that real nginx serves."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy.build import sha256_file
from deploy.jobs.deploy import deploy_fleet
from deploy.keys import keygen
from device.agent.state import STATE_DIR, State
from tests.conftest import free_port, require
from testkit.sshlab import make_lab
from testkit.agentlab import agent_for, publish, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device(tmp_path_factory, client_key, photos, builder, models):
    """One lab host with the first model deployed by push, its daemon running."""
    lab = make_lab(tmp_path_factory.mktemp("device"), client_key, photos)
    try:
        host = lab.host("pi1", lab.start_server("pi1"))
        (result,) = deploy_fleet([host], models.first, builder=builder, quiet=True)
        assert result.ok, result
        yield host
    finally:
        lab.close()


@pytest.fixture
def fresh(device):
    """The device with no agent state from an earlier test."""
    shutil.rmtree(Path(device.root) / STATE_DIR, ignore_errors=True)
    return device


def refused(agent, pattern: str, host, models, state: str = "refused") -> dict:
    """Check once; the agent refuses with `pattern`, and the device keeps serving the first model."""
    current = (Path(host.root) / "current").resolve()
    assert agent.check() == state
    status = json.loads((Path(host.root) / STATE_DIR / "status.json").read_text())
    import re
    assert re.search(pattern, status["last_error"]), status["last_error"]
    assert status["state"] == state and status["health"] == "ok"
    assert (Path(host.root) / "current").resolve() == current
    assert serving(host.daemon.http) == sha256_file(models.first)
    assert not list((Path(host.root) / "releases").glob(".incoming-*"))
    return status


def test_a_bad_signature(fresh, tmp_path, nginx, models, builder, signing_key, trusted):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key)
    channel = store / "channels" / "stable.json"
    data = json.loads(channel.read_text())
    data["payload"] = data["payload"].replace('"percent": 100', '"percent": 100.0')
    channel.write_text(json.dumps(data))
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, "bad signature", fresh, models)


def test_an_unknown_key(fresh, tmp_path, nginx, models, builder, trusted):
    keygen(tmp_path / "stolen-laptop-key")
    store = tmp_path / "store"
    publish(store, models.second, builder, tmp_path / "stolen-laptop-key")
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, "unknown key", fresh, models)


def test_an_expired_manifest(fresh, tmp_path, nginx, models, builder, signing_key, trusted):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key, valid_days=1e-6)
    time.sleep(0.2)
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, "expired", fresh, models)


def test_a_downgrade(fresh, tmp_path, nginx, models, builder, signing_key, trusted):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key)
    agent_dir = Path(fresh.root) / STATE_DIR
    agent_dir.mkdir(parents=True)
    State(serial=0, release=3, version="installed-earlier").save(agent_dir / "state.json")
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, "release 1 is not above the installed 3", fresh, models)


def test_a_replayed_older_manifest(fresh, tmp_path, nginx, models, builder, signing_key, trusted):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key, percent=0)
    old = (store / "channels" / "stable.json").read_bytes()
    from testkit.agentlab import set_rollout
    set_rollout(store, signing_key, 0)                      # serial 2
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    assert agent.check() == "waiting"                       # not in a 0% rollout
    (store / "channels" / "stable.json").write_bytes(old)   # a stolen store serves the signed serial 1 again
    later = time.time() + 10                                # (a new file to nginx: the same size, another time)
    os.utime(store / "channels" / "stable.json", (later, later))
    refused(agent, "serial 1 is below 2", fresh, models)


@pytest.mark.parametrize("tamper, pattern", [
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "sha256 .* differs"),
    (lambda data: data[: len(data) // 2], "truncated"),
    (lambda data: data + b"\0" * 4096, "oversized"),
])
def test_a_tampered_file(fresh, tmp_path, nginx, models, builder, signing_key, trusted, tamper, pattern):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key)
    model_object = store / "objects" / sha256_file(models.second)
    model_object.write_bytes(tamper(model_object.read_bytes()))
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, pattern, fresh, models)


def test_a_release_for_another_architecture_or_python(fresh, tmp_path, nginx, models, builder, signing_key,
                                                      trusted):
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key, target="aarch64-cp313-glibc2.41")
    agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
    refused(agent, r"no build for x86_64 Python 3\.11 .*built for: aarch64 Python 3\.13", fresh, models)


def test_a_store_that_is_down(fresh, trusted, models):
    agent = agent_for(fresh, f"http://127.0.0.1:{free_port()}/channels/stable.json", trusted)
    refused(agent, "store is unreachable", fresh, models, state="store-down")
    assert agent.next_wait() > agent.config.interval * 1.5      # backing off


def test_a_full_disk(fresh, tmp_path, nginx, models, builder, signing_key, trusted):
    require(shutil.which("mount") is not None, "mount not installed")
    store = tmp_path / "store"
    publish(store, models.second, builder, signing_key)
    objects = Path(fresh.root) / STATE_DIR / "objects"
    objects.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(objects)], capture_output=True)
    require(mounted.returncode == 0, f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        agent = agent_for(fresh, f"{nginx(store).url}/channels/stable.json", trusted)
        refused(agent, "disk too full: 1 MB free", fresh, models)
    finally:
        subprocess.run(["umount", str(objects)], check=True)


def test_fab_status_reads_the_agents_status_file_over_ssh(fresh, trusted):
    from deploy.jobs.status import status_work
    from deploy.outline import run_on_hosts

    agent_for(fresh, f"http://127.0.0.1:{free_port()}/channels/stable.json", trusted).check()
    (result,) = run_on_hosts([fresh], status_work)
    assert result.ok, result
    agent = result.detail["agent"]
    assert (agent["device"], agent["state"]) == ("pi1", "store-down") and "unreachable" in agent["last_error"]

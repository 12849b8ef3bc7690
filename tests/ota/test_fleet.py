"""A fleet of 20 agent-managed devices on this machine, each its own deploy root with a pidfile-managed
daemon on a folder of photos at 1 frame a second, reporting to a real Mosquitto broker and pulling from a
store real nginx serves: a release whose daemon never becomes healthy reaches the first 10% and is rolled
back there, widening it is refused naming those devices; the next release goes 10% → 50% → 100%."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.build import sha256_file
from device.agent.rollout import bucket
from testkit.processes import wait_until
from testkit.sshlab import run_fab
from testkit.agentlab import AgentFleet, publish, serving
from tests.ota.test_agent_refuses import device  # noqa: F401 - its venv is the fleet's "image"

pytestmark = pytest.mark.slow

DEVICES = [f"pi-{i:02d}" for i in range(20)]
POLL_S = 2


def wait_for(what: str, condition, timeout: float = 240) -> None:
    assert wait_until(condition, timeout, step=0.5), f"timed out waiting for {what}"


@pytest.fixture
def fleet(device, tmp_path, photos):
    """20 device roots sharing the pushed device's venv, as devices flashed from one image."""
    venv_key = json.loads((Path(device.root) / "current" / "manifest.json").read_text())["venv"]
    fleet = AgentFleet(tmp_path / "fleet", DEVICES, photos, venv=Path(device.root) / "venvs" / venv_key)
    yield fleet
    fleet.close()


def test_a_staged_rollout_over_twenty_devices(fleet, tmp_path, nginx, mosquitto, models, builder, signing_key):
    store = tmp_path / "store"
    mqtt = f"mqtt://127.0.0.1:{mosquitto.port}"
    publish(store, models.first, builder, signing_key)
    fleet.start(f"{nginx(store).url}/channels/stable.json", Path(f"{signing_key}.pub"), interval=POLL_S, mqtt=mqtt)
    first, second = sha256_file(models.first), sha256_file(models.second)
    wait_for("20 devices on release 1", lambda: fleet.on(1, DEVICES) == DEVICES)
    assert all(serving(fleet.https[n]) == first for n in DEVICES)

    wave = [n for n in DEVICES if bucket(n) < 10]
    assert 1 <= len(wave) <= 4
    publish(store, models.broken, builder, signing_key, percent=10)
    wait_for("the 10% wave to roll back release 2",
             lambda: all(fleet.status(n).get("failed_release") == 2 for n in wave), timeout=300)
    for name in DEVICES:
        assert fleet.status(name)["release"] == 1 and serving(fleet.https[name]) == first, name
        assert (fleet.status(name).get("failed_release") == 2) == (name in wave)
    widen = run_fab(builder, "publish", "--store", str(store), "--key", str(signing_key), "--rollout", "50%",
                    "--mqtt", mqtt)
    assert widen.returncode == 1 and all(name in widen.stderr for name in wave), widen.stderr
    assert "not widening" in widen.stderr

    publish(store, models.second, builder, signing_key, percent=10)
    wait_for("the 10% wave on release 3", lambda: fleet.on(3, wave) == wave)
    for percent in ("50%", "100%"):
        widened = run_fab(builder, "publish", "--store", str(store), "--key", str(signing_key), "--rollout", percent,
                          "--mqtt", mqtt)
        assert widened.returncode == 0, widened.stderr
        reached = [n for n in DEVICES if bucket(n) < float(percent[:-1])]
        wait_for(f"the {percent} wave on release 3", lambda: fleet.on(3, reached) == reached)
    assert all(serving(fleet.https[n]) == second for n in DEVICES)
    shown = run_fab(builder, "fleet-status", "--mqtt", mqtt)
    assert shown.stdout.splitlines()[-1] == "20 devices, 20 healthy"

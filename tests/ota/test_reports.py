"""Agents' reports through a real Mosquitto broker: a retained message per device that `fab fleet-status`
gathers for the whole fleet, and what widening a rollout reads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from device.agent import mqtt
from device.agent.agent import Agent, AgentConfig
from tests.conftest import REPO, free_port


def test_agents_report_retained_messages_that_fleet_status_gathers(tmp_path, mosquitto, trusted):
    url = f"mqtt://127.0.0.1:{mosquitto.port}"
    for name in ("pi-a", "pi-b"):
        config = AgentConfig(channel_url=f"http://127.0.0.1:{free_port()}/channels/stable.json", trusted=trusted,
                             root=tmp_path / name, device_id=name, daemon_http=f"127.0.0.1:{free_port()}", mqtt=url)
        assert Agent(config).check() == "store-down"
    reports = mqtt.read_retained(url, wait=0.5)
    assert [(r["device"], r["state"], r["health"]) for r in reports] == [("pi-a", "store-down", "unknown"),
                                                                          ("pi-b", "store-down", "unknown")]
    assert all("unreachable" in r["last_error"] and r["last_check"] for r in reports)
    fab = Path(sys.executable).parent / "fab"
    shown = subprocess.run([str(fab), "fleet-status", "--mqtt", url], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["DEVICE", "RELEASE", "HEALTH", "STATE"]
    assert lines[1].startswith("pi-a") and "store-down" in lines[1] and lines[-1] == "2 devices, 0 healthy"


def test_an_unreachable_broker_is_one_line(tmp_path):
    fab = Path(sys.executable).parent / "fab"
    shown = subprocess.run([str(fab), "fleet-status", "--mqtt", f"mqtt://127.0.0.1:{free_port()}"], cwd=REPO,
                           capture_output=True, text=True)
    assert shown.returncode == 1
    assert shown.stderr.strip().splitlines() == [shown.stderr.strip()]
    assert "cannot reach the MQTT broker" in shown.stderr

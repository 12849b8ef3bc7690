"""The command lines: `fab keygen`, `fab publish` (release, then rollout changes) and `device agent --once`,
with their one-line errors."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from device.agent.manifest import verify
from device.agent.state import STATE_DIR
from tests.conftest import free_port
from testkit.sshlab import run_fab
from tests.ota.conftest import THIS_TARGET


def one_line_error(result, pattern: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and pattern in result.stderr, result.stderr


def test_fab_keygen_and_publish(tmp_path, builder, models, mosquitto):
    key = tmp_path / "keys" / "signing-key"
    made = run_fab(builder, "keygen", "--key", str(key))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and Path(f"{key}.pub").is_file()
    one_line_error(run_fab(builder, "keygen", "--key", str(key)), "exists")

    store = tmp_path / "store"
    published = run_fab(builder, "publish", "--model", str(models.first), "--store", str(store), "--key", str(key),
                        "--target", THIS_TARGET, "--rollout", "10%", "--json")
    assert published.returncode == 0, published.stderr
    summary = json.loads(published.stdout)
    assert (summary["release"], summary["rollout"]) == (1, {"percent": 10.0, "halted": False})
    one_line_error(run_fab(builder, "publish", "--store", str(store), "--key", str(key), "--rollout", "50%"),
                   "--mqtt")
    widened = run_fab(builder, "publish", "--store", str(store), "--key", str(key), "--rollout", "50%",
                      "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}")
    assert widened.returncode == 0, widened.stderr
    assert "release 1" in widened.stdout and "rolling out to 50%" in widened.stdout
    halted = run_fab(builder, "publish", "--store", str(store), "--key", str(key), "--halt")
    assert "halted" in halted.stdout
    trusted_text = Path(f"{key}.pub").read_text()
    from device.agent.manifest import key_id, load_public_key
    raw = load_public_key(trusted_text)
    channel = verify((store / "channels" / "stable.json").read_bytes(), {key_id(raw): raw})
    assert channel.rollout == {"percent": 50.0, "halted": True} and channel.payload["serial"] == 3

    one_line_error(run_fab(builder, "publish", "--store", str(store), "--key", str(key), "--rollout", "150%"),
                   "--rollout '150%'")
    one_line_error(run_fab(builder, "publish", "--model", str(models.first), "--store", str(store), "--key",
                           str(key), "--target", "arm-cp3-x"), "--target 'arm-cp3-x'")
    one_line_error(run_fab(builder, "publish", "--store", str(store), "--key", str(tmp_path / "nokey")),
                   "no signing key")


def test_device_agent_once(tmp_path, signing_key):
    device = [sys.executable, "-m", "device.cli", "agent", "--root", str(tmp_path / "root"), "--device-id", "pi-x"]
    url = f"http://127.0.0.1:{free_port()}/channels/stable.json"
    down = subprocess.run(device + ["--channel", url, "--trust", f"{signing_key}.pub", "--once"],
                          capture_output=True, text=True)
    assert down.returncode == 1
    status = json.loads(down.stdout)
    assert status["state"] == "store-down" and status["device"] == "pi-x"
    assert json.loads((tmp_path / "root" / STATE_DIR / "status.json").read_text()) == status
    (tmp_path / "bad.pub").write_text("ssh-ed25519 AAAA\n")
    bad = subprocess.run(device + ["--channel", url, "--trust", str(tmp_path / "bad.pub"), "--once"],
                         capture_output=True, text=True)
    one_line_error(bad, "not a bloomkit public key")
    nan = subprocess.run(device + ["--channel", url, "--trust", f"{signing_key}.pub", "--interval", "nan"],
                         capture_output=True, text=True)
    one_line_error(nan, "--interval nan")

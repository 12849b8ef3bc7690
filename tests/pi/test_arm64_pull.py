"""The arm64 host pulls: set up once by `fab deploy`, its `device agent` (run from the deployed release,
under qemu) then fetches a signed model-only release from real nginx on this machine and installs it with
the release's own host-side install path. Run only with `-m pi` (the infra helper's area)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.agent.state import STATE_DIR
from tests.conftest import REPO
from tests.pi.conftest import PI_UID, free_port
from tests.pi.test_arm64_deploy import HEALTH_TIMEOUT_S, PHOTOS, SOURCE_FPS, _get_json, pi  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.pi]

DEPLOY_TIMEOUT_S = 15 * 60
PI_TARGETS = {"bookworm": "aarch64-cp311-glibc2.36", "trixie": "aarch64-cp313-glibc2.41"}  # each rootfs's Python and glibc


def fab(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("fab")), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=DEPLOY_TIMEOUT_S, env={**os.environ, "BLOOMKIT_CACHE": str(cache)})


def test_the_arm64_host_pulls_a_signed_release_from_nginx(pi, reference_model, flowers_dir, tmp_path):  # noqa: F811
    from device.metadata import read_model_info, write_metadata
    from testkit.webservers import start_nginx

    photos = pi.local(PHOTOS)
    photos.mkdir(parents=True, exist_ok=True)
    for photo in sorted(flowers_dir.glob("*/*.jpg"))[::100][:3]:
        (photos / photo.name).write_bytes(photo.read_bytes())
    for path in (photos, *photos.iterdir()):
        os.chown(path, PI_UID, PI_UID)
    http = f"127.0.0.1:{free_port()}"
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(json.dumps({"hosts": {"arm64-pi": {
        "hostname": pi.host, "port": pi.port, "user": pi.user, "identity": str(pi.identity_file),
        "known_hosts": str(pi.known_hosts_file), "root": pi.root_dir,
        "daemon": {"http": http, "source": f"folder:{PHOTOS}", "args": ["--source-fps", str(SOURCE_FPS)]}}}}))
    cache = tmp_path / "cache"
    pushed = fab("deploy", "--model", str(reference_model), "--inventory", str(inventory), "--health-timeout",
                 str(HEALTH_TIMEOUT_S), cache=cache)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    key = tmp_path / "keys" / "signing-key"
    assert fab("keygen", "--key", str(key), cache=cache).returncode == 0
    info = read_model_info(reference_model)
    second = tmp_path / "flowers-v2.tflite"
    second.write_bytes(write_metadata(reference_model.read_bytes(), info.labels, mean=info.mean, std=info.std,
                                      name=info.name, version="v2"))
    store = tmp_path / "store"
    published = fab("publish", "--model", str(second), "--store", str(store), "--key", str(key),
                    "--target", PI_TARGETS[pi.suite], "--inventory", str(inventory), cache=cache)
    assert published.returncode == 0, published.stderr
    server = start_nginx(store, tmp_path / "nginx")      # the chroot shares this machine's loopback
    try:
        trusted = f"{pi.root_dir}/agent/trusted.pub"
        pi.local(trusted).parent.mkdir(parents=True, exist_ok=True)
        pi.local(trusted).write_text(Path(f"{key}.pub").read_text())
        os.chown(pi.local(trusted).parent, PI_UID, PI_UID)
        (pi.local(pi.root_dir) / "data" / "daemon.args").write_text(
            "".join(a + "\n" for a in ("--http", http, "--source", f"folder:{PHOTOS}",
                                       "--source-fps", str(SOURCE_FPS))))
        started = time.monotonic()
        output = pi.ssh(f"PYTHONPATH={pi.root_dir}/current/lib {pi.root_dir}/current/venv/bin/python -m device.cli "
                        f"agent --once --channel {server.url}/channels/stable.json --trust {trusted} "
                        f"--root {pi.root_dir} --device-id arm64-pi --daemon-http {http} "
                        f"--health-timeout {HEALTH_TIMEOUT_S}", timeout=DEPLOY_TIMEOUT_S)
        print(f"the agent's pull and install on the arm64 host took {time.monotonic() - started:.0f} s")
    finally:
        server.stop()
    status = json.loads(output.strip().splitlines()[-1])
    assert (status["state"], status["release"], status["health"]) == ("installed", 1, "ok"), status
    root = pi.local(pi.root_dir)
    assert (root / STATE_DIR / "state.json").is_file() and not (root / "data" / "agent").exists(), \
        "the agent's state is its own, not in the daemon's data directory"
    code, health = _get_json(f"http://{http}/healthz")
    assert code == 200 and health["model"]["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()

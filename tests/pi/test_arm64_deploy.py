"""End to end on the arm64 host: `fab deploy` the reference model, then LiteRT classifies under qemu."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.pi.conftest import PI_UID, free_port

pytestmark = [pytest.mark.slow, pytest.mark.pi]

PHOTOS = "/home/pi/photos"         # the camera's stand-in: the daemon's `--source folder:`
DEPLOY_TIMEOUT_S = 15 * 60         # the first deploy builds the venv under qemu
HEALTH_TIMEOUT_S = 300             # numpy, OpenCV and LiteRT import slowly under qemu
# A frame every 2 s, as a camera delivers them whatever inference costs: inference under qemu takes about
# 2 s, so a folder replayed on demand would leave /healthz's 2 s freshness window between frames.
SOURCE_FPS = 0.5
# XNNPACK's int8 kernels requantize differently on arm (NEON) and x86 (AVX): scores drift a few steps of
# 1/256 over the network's layers. A broken runtime is far off (qemu's default CPU gives wrong labels).
SCORE_TOLERANCE = 0.1
CLEAR_MARGIN = 0.3               # photos whose top label leads by this much keep it on either machine


@pytest.fixture
def pi(arm64_pi):
    """The session's arm64 host, with the daemon a test deployed stopped after it (the deploy's own pidfile
    service `stop`): under qemu it would keep a core busy for the rest of the session."""
    from deploy.host.layout import HOST_SCRIPTS

    yield arm64_pi
    service = f"{arm64_pi.root_dir}/current/{HOST_SCRIPTS}/service.py"
    arm64_pi.ssh(f"if [ -e {service} ]; then python3 {service} --root {arm64_pi.root_dir} stop; fi")


def _pick_photos(flowers_dir: Path, reference_model: Path) -> dict[str, tuple[str, float]]:
    """One photo per class that the model gets clearly right on this machine, with its top label and score."""
    from device.classifier import Classifier
    from device.imaging import decode

    classifier = Classifier(reference_model, top_k=2)
    picked = {}
    for label in classifier.labels:
        for photo in sorted((flowers_dir / label).glob("*.jpg")):
            first, second = classifier.classify(decode(photo))
            if first.label == label and first.score - second.score >= CLEAR_MARGIN:
                picked[photo.name] = (first.label, first.score)
                break
    return picked


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _samples(url: str, wanted: int, timeout: float) -> list[dict]:
    """Distinct frames' results from /api/latest, polled until `wanted` or `timeout`."""
    results: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(results) < wanted and time.monotonic() < deadline:
        status, latest = _get_json(url)
        if status == 200 and latest.get("top"):
            results[latest["frame"]] = latest
        time.sleep(0.5)
    return list(results.values())


def test_fab_deploy_runs_the_model_under_qemu(pi, reference_model, flowers_dir, tmp_path):
    expected = _pick_photos(flowers_dir, reference_model)
    assert len(expected) >= 3, "the reference model should get at least three classes right"
    photos = pi.local(PHOTOS)
    photos.mkdir(parents=True)
    for name in expected:
        shutil.copy(next(flowers_dir.glob(f"*/{name}")), photos / name)
    for path in (photos, *photos.iterdir()):
        os.chown(path, PI_UID, PI_UID)

    http_port = free_port()  # the chroot shares this machine's network: the daemon's port is on our loopback
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(json.dumps({"hosts": {"arm64-pi": {
        "hostname": pi.host, "port": pi.port, "user": pi.user,
        "identity": str(pi.identity_file), "known_hosts": str(pi.known_hosts_file),
        "root": pi.root_dir, "daemon": {"http": f"127.0.0.1:{http_port}", "source": f"folder:{PHOTOS}",
                                        "args": ["--source-fps", str(SOURCE_FPS)]},
    }}}))  # JSON is YAML
    started = time.monotonic()
    deploy = subprocess.run(
        [str(Path(sys.executable).with_name("fab")), "deploy", "--model", str(reference_model),
         "--inventory", str(inventory), "--health-timeout", str(HEALTH_TIMEOUT_S), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S,
        env={**os.environ, "BLOOMKIT_CACHE": str(tmp_path / "deploy-cache")})
    print(f"fab deploy to the arm64 host took {time.monotonic() - started:.0f} s\n{deploy.stderr}")
    assert deploy.returncode == 0, f"fab deploy failed:\n{deploy.stdout}\n{deploy.stderr}"
    [report] = json.loads(deploy.stdout)
    model_sha256 = hashlib.sha256(reference_model.read_bytes()).hexdigest()
    assert report["status"] == "OK" and report["new"].endswith(model_sha256[:8]), report

    status, health = _get_json(f"http://127.0.0.1:{http_port}/healthz")
    assert status == 200 and health["status"] == "ok", health
    assert health["model"]["sha256"] == model_sha256
    assert health["frames"] > 0

    # The daemon is an aarch64 Python: on this machine its process is qemu running it.
    pid = int(pi.local(f"{pi.root_dir}/run/daemon.pid").read_text())
    assert Path(os.readlink(f"/proc/{pid}/exe")).name.startswith("qemu-aarch64")

    samples = _samples(f"http://127.0.0.1:{http_port}/api/latest", wanted=len(expected), timeout=60)
    assert len(samples) >= 2, "frames should keep flowing through the photos"
    by_label = dict(expected.values())
    for sample in samples:
        top = sample["top"][0]
        assert top["label"] in by_label, sample
        assert abs(top["score"] - by_label[top["label"]]) <= SCORE_TOLERANCE, (sample, by_label)

"""`device run` end to end in a subprocess, on the real model: results, shutdown, hot reload, failing sources."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import require
from tests.daemon.conftest import write_video
from testkit.daemon_process import parse_metrics, read_sha256, switch_symlink, with_version


def test_serves_results_metrics_and_stops_cleanly_on_sigterm(run_daemon, reference_model, rose_folder, tmp_path):
    jsonl = tmp_path / "results.jsonl"
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--threads", "1",
                        "--http", "127.0.0.1:0", "--jsonl", str(jsonl), "--smooth", "3")
    health = daemon.healthy()
    assert health["model"]["sha256"] == read_sha256(reference_model)
    assert health["model"]["name"] == "efficientnet_lite0" and health["source"] == f"folder:{rose_folder}"
    daemon.wait_for(lambda: daemon.json("/api/latest")[1]["frame"] >= 5, what="five results")
    status, latest = daemon.json("/api/latest")
    assert status == 200 and latest["top"][0]["label"] == "roses" and len(latest["top"]) == 3
    assert latest["fps"] > 0 and 0 < latest["latency_ms"] <= latest["age_ms"]

    status, body = daemon.get("/metrics")
    metrics = parse_metrics(body.decode())
    assert status == 200
    assert metrics["bloomkit_inferences_total"] >= 5
    assert metrics["bloomkit_frames_total"] >= metrics["bloomkit_inferences_total"]
    latency = "bloomkit_inference_latency_seconds"
    assert metrics[f'{latency}_bucket{{le="+Inf"}}'] == metrics[f"{latency}_count"] >= 5
    assert any(name.startswith("bloomkit_model_info{") and read_sha256(reference_model) in name for name in metrics)
    status, page = daemon.get("/")
    assert status == 200 and b"/stream.mjpg" in page and b"/api/latest" in page
    assert daemon.get("/nothing-here")[0] == 404

    began = time.monotonic()
    code = daemon.terminate()
    assert code == 0, daemon.log
    assert time.monotonic() - began < 2.0, "SIGTERM must stop the daemon within two seconds"
    lines = jsonl.read_text().splitlines()
    assert len(lines) >= 5 and all(json.loads(line)["top"] for line in lines), "every line whole and flushed"


def test_replacing_the_model_file_reloads_it_and_a_broken_one_is_refused(run_daemon, reference_model, rose_folder,
                                                                         tmp_path):
    releases = tmp_path / "releases"
    releases.mkdir()
    first = releases / "v1.tflite"
    shutil.copy(reference_model, first)
    current = tmp_path / "current.tflite"
    current.symlink_to(first)
    daemon = run_daemon("--model", str(current), "--source", f"folder:{rose_folder}", "--source-fps", "20",
                        "--threads", "1", "--http", "127.0.0.1:0")
    assert daemon.healthy()["model"]["version"] == "v1"

    # A deploy: the new release beside the old, then an atomic symlink switch.
    second = with_version(reference_model, releases / "v2.tflite", "v2")
    switch_symlink(current, second)
    health = daemon.wait_for(lambda: (lambda h: h["model"]["version"] == "v2" and h)(daemon.json("/healthz")[1]),
                             what="the reload")
    assert health["model"]["sha256"] == read_sha256(second) and health["status"] == "ok"

    # A broken file renamed into place: the daemon keeps the model it has, and says so once.
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 this is not a model" * 100)
    os.replace(broken, current)
    daemon.wait_for(lambda: any("does not load" in line for line in daemon.log), what="the refusal")
    frames = daemon.json("/healthz")[1]["frames"]
    time.sleep(1.5)
    status, health = daemon.json("/healthz")
    assert status == 200 and health["model"]["sha256"] == read_sha256(second) and health["frames"] > frames
    assert daemon.json("/api/latest")[1]["top"][0]["label"] == "roses"
    assert sum("does not load" in line for line in daemon.log) == 1
    status, body = daemon.get("/metrics")
    metrics = parse_metrics(body.decode())
    assert metrics["bloomkit_model_reloads_total"] == 1 and metrics["bloomkit_model_reload_failures_total"] == 1
    assert daemon.terminate() == 0


def test_a_source_that_stops_turns_unhealthy_then_exits_non_zero(run_daemon, reference_model, photos, tmp_path):
    video = write_video(tmp_path / "short.avi", photos["daisy"][:2], fps=10, frames_each=5)  # one second
    daemon = run_daemon("--model", str(reference_model), "--source", str(video), "--threads", "1",
                        "--http", "127.0.0.1:0", "--max-frame-gap", "4")
    daemon.healthy()
    status, health = daemon.wait_for(lambda: (lambda r: r[0] == 503 and r)(daemon.json("/healthz")), what="503")
    assert health["status"] == "unhealthy" and "the video has ended" in health["reason"]
    code = daemon.process.wait(timeout=15)
    assert code != 0
    daemon._reader.join(2)
    assert re.fullmatch(r"device: error: source .*short\.avi: no frames for \d+ s \(the video has ended\); giving up",
                        daemon.log[-1]), daemon.log


@pytest.mark.parametrize("source, message", [
    ("opencv:7", "device: error: source opencv:7: no camera there"),
    ("picamera2", "device: error: source picamera2: the picamera2 package is not installed"),
    ("/nonexistent/video.mp4", "device: error: source /nonexistent/video.mp4: no such video file"),
    (None, "device: error: source opencv:0: no camera there (no --source given, so opencv:0 was tried)"),
])
def test_no_camera_is_one_line_and_a_non_zero_exit(reference_model, source, message):
    chosen = ["--source", source] if source else []
    result = subprocess.run([sys.executable, "-m", "device.cli", "run", "--model", str(reference_model), *chosen,
                             "--http", "off"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr


@pytest.mark.parametrize("kind", ["broken video", "refused stream"])
def test_a_source_ffmpeg_cannot_open_is_one_line_without_ffmpeg_messages(reference_model, tmp_path, kind):
    if kind == "broken video":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"not a video at all")  # FFmpeg itself would print "moov atom not found"
    else:
        source = "rtsp://127.0.0.1:1/x"  # FFmpeg itself would print "Connection refused"
    environment = {name: value for name, value in os.environ.items() if name != "OPENCV_FFMPEG_LOGLEVEL"}
    result = subprocess.run([sys.executable, "-m", "device.cli", "run", "--model", str(reference_model),
                             "--source", str(source), "--http", "off"],
                            capture_output=True, text=True, timeout=60, env=environment)
    assert result.returncode == 1
    assert result.stderr == f"device: error: source {source}: cannot open it\n"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_serves_on_an_ipv6_address(run_daemon, reference_model, rose_folder):
    require(has_ipv6_loopback(), "IPv6 loopback (::1)")
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--source-fps", "5",
                        "--threads", "1", "--http", "[::1]:0")
    daemon.healthy()
    assert re.fullmatch(r"http://\[::1\]:\d+", daemon.url)
    assert daemon.terminate() == 0


def test_a_network_camera_that_goes_away_is_retried_then_recovers(run_daemon, reference_model, rose_folder):
    """Daemon B watches daemon A's MJPEG stream, as it would an IP camera; A stops, then comes back."""
    common = ("--model", str(reference_model), "--threads", "1")
    camera = run_daemon(*common, "--source", f"folder:{rose_folder}", "--source-fps", "10", "--http", "127.0.0.1:0")
    camera.healthy()
    port = camera.url.rsplit(":", 1)[1]
    viewer = run_daemon(*common, "--source", f"{camera.url}/stream.mjpg", "--http", "127.0.0.1:0",
                        "--max-frame-gap", "30")
    viewer.healthy()
    latest = viewer.wait_for(lambda: viewer.json("/api/latest")[1]["top"], what="a result")
    assert latest[0]["label"] == "roses"

    assert camera.terminate() == 0
    status, health = viewer.wait_for(lambda: (lambda r: r[0] == 503 and r)(viewer.json("/healthz")), what="503")
    assert "delivers no frames" in health["reason"]
    assert viewer.process.poll() is None, "a camera that went away is retried, not given up at once"

    camera = run_daemon(*common, "--source", f"folder:{rose_folder}", "--source-fps", "10",
                        "--http", f"127.0.0.1:{port}")
    viewer.wait_for(lambda: viewer.json("/healthz")[0] == 200, timeout=30, what="recovery")
    assert any("frames are flowing again" in line for line in viewer.log)
    assert viewer.terminate() == 0

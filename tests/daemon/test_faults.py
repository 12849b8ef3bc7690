"""`device run` under the red team's faults: full disks, clients that hang up, HEAD probes, stalled streams,
a model a deploy is waiting for that does not load, and numbers that are not numbers."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO
from testkit.daemon_process import parse_metrics, read_sha256, switch_symlink, with_version

HEALTH_SCRIPT = REPO / "deploy" / "host" / "health.py"


def no_tracebacks(daemon) -> None:
    assert not any("Traceback" in line or "Error:" in line for line in daemon.log), daemon.log


def test_jsonl_to_a_full_stdout_keeps_classifying_and_says_so(run_daemon, reference_model, rose_folder):
    with open("/dev/full", "w") as full:
        daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--threads", "1",
                            "--http", "127.0.0.1:0", "--jsonl", "-", stdout=full)
    daemon.healthy()
    daemon.wait_for(lambda: daemon.json("/api/latest")[1]["frame"] >= 5, what="five results")
    status, health = daemon.json("/healthz")
    assert status == 200 and health["warnings"] == ["--jsonl standard output: No space left on device"]
    metrics = parse_metrics(daemon.get("/metrics")[1].decode())
    assert metrics["bloomkit_jsonl_records_lost_total"] >= 5
    assert daemon.terminate() == 0
    no_tracebacks(daemon)
    assert sum("No space left on device" in line for line in daemon.log) == 1, "said once, not per record"


def test_jsonl_on_a_full_disk_keeps_classifying_and_recovers(run_daemon, reference_model, rose_folder, full_disk):
    jsonl = full_disk / "results.jsonl"
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--source-fps", "20",
                        "--threads", "1", "--http", "127.0.0.1:0", "--jsonl", str(jsonl))
    daemon.healthy()
    lost = daemon.wait_for(lambda: parse_metrics(daemon.get("/metrics")[1].decode())[
        "bloomkit_jsonl_records_lost_total"] >= 3, what="records counted as lost")
    assert lost and daemon.json("/healthz")[1]["warnings"] == [f"--jsonl {jsonl}: No space left on device"]
    os.unlink(full_disk / "filler")  # the user makes room
    daemon.wait_for(lambda: daemon.json("/healthz")[1]["warnings"] == [], what="writing again")
    daemon.wait_for(lambda: len(jsonl.read_text().splitlines()) >= 3, what="lines written")
    assert daemon.terminate() == 0
    no_tracebacks(daemon)
    assert all(json.loads(line)["top"] for line in jsonl.read_text().splitlines())
    assert any("writing again" in line for line in daemon.log)


def test_the_jsonl_file_is_rotated_under_its_budget(run_daemon, reference_model, rose_folder, tmp_path):
    jsonl = tmp_path / "results.jsonl"
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--threads", "1",
                        "--http", "127.0.0.1:0", "--jsonl", str(jsonl), "--jsonl-max-mb", "0.002")
    daemon.healthy()
    daemon.wait_for(lambda: parse_metrics(daemon.get("/metrics")[1].decode())["bloomkit_jsonl_rotations_total"] >= 2,
                    what="two rotations")
    assert daemon.terminate() == 0
    for path in (jsonl, tmp_path / "results.jsonl.1"):
        assert path.stat().st_size <= 2000 and all(json.loads(line)["top"] for line in path.read_text().splitlines())
    assert sorted(p.name for p in tmp_path.glob("results.*")) == ["results.jsonl", "results.jsonl.1"]


def hang_up(port: int, request: bytes) -> None:
    """Send `request` and reset the connection at once (SO_LINGER 0), as a client that goes away does."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(request)


def test_clients_that_hang_up_early_are_counted_not_logged(run_daemon, reference_model, rose_folder):
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--source-fps", "5",
                        "--threads", "1", "--http", "127.0.0.1:0")
    daemon.healthy()
    port = int(daemon.url.rsplit(":", 1)[1])
    for _ in range(20):
        hang_up(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # gone before the headers end
        hang_up(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # gone before the page is sent
    metrics = daemon.wait_for(lambda: (lambda m: m["bloomkit_http_disconnects_total"] >= 20 and m)(
        parse_metrics(daemon.get("/metrics")[1].decode())), what="the disconnects counted")
    assert metrics["bloomkit_http_disconnects_total"] <= 40
    assert daemon.get("/healthz")[0] == 200
    assert daemon.terminate() == 0
    no_tracebacks(daemon)
    assert not any("Connection" in line or "Broken" in line for line in daemon.log), daemon.log


def test_head_answers_like_get_without_a_body(run_daemon, reference_model, rose_folder):
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{rose_folder}", "--source-fps", "5",
                        "--threads", "1", "--http", "127.0.0.1:0")
    daemon.healthy()
    for path in ("/healthz", "/api/latest", "/metrics", "/", "/stream.mjpg", "/nothing-here"):
        request = urllib.request.Request(daemon.url + path, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        assert body == b"", path
        assert status == (404 if path == "/nothing-here" else 200), path
        if path != "/stream.mjpg":
            assert int(headers["Content-Length"]) == len(daemon.get(path)[1]) or path in ("/metrics", "/api/latest")
    assert daemon.terminate() == 0


def test_a_stalled_network_stream_leaks_no_opencv_warning(run_daemon, reference_model, rose_folder):
    """A camera that keeps the connection open but stops sending: OpenCV's read times out after 2 s."""
    common = ("--model", str(reference_model), "--threads", "1")
    camera = run_daemon(*common, "--source", f"folder:{rose_folder}", "--source-fps", "10", "--http", "127.0.0.1:0")
    camera.healthy()
    viewer = run_daemon(*common, "--source", f"{camera.url}/stream.mjpg", "--http", "127.0.0.1:0")
    viewer.healthy()
    camera.process.send_signal(signal.SIGSTOP)
    try:
        viewer.wait_for(lambda: (lambda r: r[0] == 503 and "delivers no frames" in r[1]["reason"])(
            viewer.json("/healthz")), what="503 with the reason, once a read has timed out")
        time.sleep(2.5)  # at least one more timed-out read
    finally:
        camera.process.send_signal(signal.SIGCONT)
    viewer.wait_for(lambda: viewer.json("/healthz")[0] == 200, what="recovery")
    assert viewer.terminate() == 0
    assert not any("WARN" in line or "timeout" in line for line in viewer.log), viewer.log


def test_a_model_that_does_not_load_is_named_so_a_deploy_stops_waiting(run_daemon, reference_model, rose_folder,
                                                                         tmp_path):
    current = tmp_path / "current.tflite"
    current.write_bytes(reference_model.read_bytes())
    daemon = run_daemon("--model", str(current), "--source", f"folder:{rose_folder}", "--source-fps", "20",
                        "--threads", "1", "--http", "127.0.0.1:0")
    assert daemon.healthy()["rejected_model"] is None
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(reference_model.read_bytes()[:100_000])  # cut short by an interrupted copy
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"model": {"sha256": read_sha256(broken)}}))
    expected = read_sha256(broken)
    switch_symlink(current, broken)

    began = time.monotonic()
    waited = subprocess.run([sys.executable, str(HEALTH_SCRIPT), "--url", daemon.url + "/healthz",
                             "--manifest", str(manifest), "--timeout", "15"], capture_output=True, text=True)
    assert waited.returncode == 1, waited.stderr
    assert time.monotonic() - began < 6, "the daemon knew within a second or two: no waiting out the window"
    answer = json.loads(waited.stdout)
    assert answer["reason"].startswith("the daemon cannot load the new model (") and "truncated" in answer["reason"]
    assert answer["healthz"]["rejected_model"]["sha256"] == expected
    assert answer["healthz"]["model"]["sha256"] == read_sha256(reference_model), "the old model goes on"

    switch_symlink(current, with_version(reference_model, tmp_path / "fixed.tflite", "v2"))
    health = daemon.wait_for(lambda: (lambda h: h["model"]["version"] == "v2" and h)(daemon.json("/healthz")[1]),
                             what="the good model")
    assert health["rejected_model"] is None
    assert daemon.terminate() == 0


@pytest.mark.parametrize("option, message", [
    (["--threshold", "nan"], "--threshold nan: must be a finite number"),
    (["--threshold", "1.5"], "--threshold 1.5: must be at least 0 and at most 1"),
    (["--top-k", "0"], "--top-k 0: must be at least 1"),
    (["--threads", "-1"], "--threads -1: must be at least 1"),
    (["--source-fps", "inf"], "--source-fps inf: must be a finite number"),
    (["--jsonl", "/nonexistent/r.jsonl"], "--jsonl /nonexistent/r.jsonl: No such file or directory"),
])
def test_options_that_cannot_be_used_are_one_line(reference_model, rose_folder, option, message):
    result = subprocess.run([sys.executable, "-m", "device.cli", "run", "--model", str(reference_model),
                             "--source", f"folder:{rose_folder}", "--http", "off", *option],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr == f"device: error: {message}\n"


@pytest.mark.parametrize("option, message", [
    (["--top-k", "0"], "--top-k 0: must be at least 1"),
    (["--threshold", "1.5"], "--threshold 1.5: must be at least 0 and at most 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
])
def test_the_classifiers_options_are_refused_before_the_model_loads(tmp_path, option, message):
    """No model file at all: the option is what `device run` reports, as the inventory check does."""
    result = subprocess.run([sys.executable, "-m", "device.cli", "run", "--model", str(tmp_path / "absent.tflite"),
                             "--http", "off", *option], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr == f"device: error: {message}\n"

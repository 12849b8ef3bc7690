"""Where events go besides MQTT: snapshots on disk under a budget, and a webhook that retries (a real HTTP server)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from device.daemon import webhook as webhook_module
from device.daemon.discovery import slug
from device.daemon.events import new_event_id
from device.daemon.snapshots import SnapshotError, SnapshotStore
from device.daemon.webhook import Webhook
from testkit.scenes import write_scene


def test_snapshots_stay_under_their_budget_oldest_out_first(tmp_path):
    store = SnapshotStore(tmp_path / "snapshots", budget_bytes=100_000)
    ids = []
    for _ in range(8):
        ids.append(new_event_id())
        assert store.save(ids[-1], b"\xff\xd8" + bytes(30_000))
        time.sleep(0.002)  # ids sort by time to the millisecond
    kept = sorted(path.stem for path in (tmp_path / "snapshots").glob("*.jpg"))
    assert kept == ids[-3:]  # 3 x 30 kB fit in 100 kB; the newest are kept
    assert store.path(ids[-1]).read_bytes()[:2] == b"\xff\xd8" and store.path(ids[0]) is None
    assert store.path("../../etc/passwd") is None
    assert (tmp_path / "snapshots").stat().st_mode & 0o077 == 0  # camera pictures are the owner's only


def test_a_full_disk_loses_a_snapshot_with_one_log_line_and_the_next_one_is_kept_once_there_is_room(
        full_disk, caplog):
    store = SnapshotStore(full_disk / "snapshots", budget_bytes=1_000_000)  # a full disk at start is no error
    first, second = new_event_id(), new_event_id() + "b"
    assert not store.save(first, b"\xff\xd8" + bytes(20_000))
    assert [r.message for r in caplog.records] == [f"snapshot {first} not saved: No space left on device"]
    assert store.path(first) is None and not [p for p in full_disk.rglob("*") if p.name.endswith(".tmp")]
    (full_disk / "filler").unlink()
    assert store.save(second, b"\xff\xd8" + bytes(20_000)) and store.path(second).stat().st_size == 20_002


def test_a_snapshot_folder_that_cannot_be_made_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SnapshotError, match="snapshots .*file/snapshots: Not a directory"):
        SnapshotStore(tmp_path / "file" / "snapshots", 1000)


def test_labels_become_stable_distinct_ids():
    assert slug("roses") == "roses"
    assert slug("Roses") != slug("roses") and slug("Roses") == slug("Roses")
    assert slug("pink rose") != slug("pink-rose") and slug("pink rose").startswith("pink_rose_")


class Endpoint:
    """A real HTTP endpoint: answers the first requests slowly or with 500, then 200; records the bodies."""

    def __init__(self, script: list[str]) -> None:
        self.script, self.bodies = list(script), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                step = endpoint.script.pop(0) if endpoint.script else "ok"
                endpoint.bodies.append((step, body))
                if step == "slow":
                    time.sleep(1.0)
                self.send_response(500 if step == "fail" else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_the_webhook_retries_a_timeout_and_an_error_then_delivers(monkeypatch):
    monkeypatch.setattr(webhook_module, "RETRY_DELAYS_S", (0.05, 0.05, 0.05))
    endpoint = Endpoint(["slow", "fail", "ok"])
    hook = Webhook(endpoint.url, timeout_s=0.3)
    hook.start()
    try:
        hook.post({"type": "start", "id": "e1"})
        hook.post({"type": "end", "id": "e1"})
        deadline = time.monotonic() + 10
        while hook.delivered < 2:
            assert time.monotonic() < deadline, endpoint.bodies
            time.sleep(0.05)
        assert [step for step, _ in endpoint.bodies] == ["slow", "fail", "ok", "ok"]
        assert [body["type"] for _, body in endpoint.bodies] == ["start", "start", "start", "end"]  # in order
        assert hook.failed == 0
    finally:
        hook.close()
        endpoint.close()


def test_device_run_posts_its_events_to_the_webhook(run_daemon, reference_model, clear_photos, tmp_path):
    endpoint = Endpoint([])
    scene = write_scene(tmp_path / "scene", [("daisy", clear_photos["daisy"], 1)])
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{scene}", "--source-fps", "10",
                        "--threads", "1", "--http", "127.0.0.1:0", "--webhook", endpoint.url)
    try:
        daemon.healthy()
        daemon.wait_for(lambda: endpoint.bodies, what="a webhook call")
        step, body = endpoint.bodies[0]
        assert body["type"] == "start" and body["label"] == "daisy" and body["snapshot"] is None  # no data dir
        assert daemon.json("/healthz")[1]["webhook"]["delivered"] >= 1
    finally:
        daemon.terminate()
        endpoint.close()

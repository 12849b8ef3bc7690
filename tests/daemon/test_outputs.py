"""Result records, JSON Lines (rotated, and whole lines on a full disk), and events only when the top label changes."""
from __future__ import annotations

import json
import logging
import os

from device.classifier import Category
from device.daemon.outputs import ChangeEvents, JsonLines, result_record


def record(*labels: str) -> dict:
    return result_record(1, [Category(i, label, 0.5) for i, label in enumerate(labels)], 9.5, 0.0123, 0.02, "flowers")


def test_a_result_record_has_the_time_top_k_fps_and_latency():
    result = record("roses", "tulips")
    assert result["timestamp"].endswith("Z")
    assert [c["label"] for c in result["top"]] == ["roses", "tulips"]
    assert (result["fps"], result["latency_ms"], result["age_ms"], result["model"]) == (9.5, 12.3, 20.0, "flowers")


def test_change_events_fire_only_when_the_top_label_changes():
    events = ChangeEvents()
    stream = [record("roses", "tulips"), record("roses", "daisy"), record("tulips"),
              record(), record(), record("tulips")]
    fired = [events.event(result) for result in stream]
    assert [(e["previous"], e["label"]) if e else None for e in fired] == [
        (None, "roses"), None, ("roses", "tulips"), ("tulips", None), None, (None, "tulips")]


def test_json_lines_are_appended_and_readable_line_by_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"earlier": true}\n')
    output = JsonLines(str(path), max_bytes=10**6)
    output.write(record("roses"))
    assert len(path.read_text().splitlines()) == 2, "each line is flushed as it is written"
    output.write(record("daisy"))
    output.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True} and [line["top"][0]["label"] for line in lines[1:]] == ["roses", "daisy"]


def test_json_lines_rotate_under_their_size_budget(tmp_path):
    path = tmp_path / "results.jsonl"
    line_bytes = len(json.dumps(record("roses"), separators=(",", ":"))) + 1
    output = JsonLines(str(path), max_bytes=5 * line_bytes)
    for _ in range(23):
        output.write(record("roses"))
    output.close()
    assert output.rotations == 4 and output.lost == 0
    old, new = (tmp_path / "results.jsonl.1").read_text(), path.read_text()
    assert len(old.splitlines()) == 5 and len(new.splitlines()) == 3, "the budget holds whole lines"
    assert all(json.loads(line)["top"] for line in (old + new).splitlines())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl", "results.jsonl.1"], "one old file kept"


def test_json_lines_on_a_full_disk_lose_records_not_lines_and_recover(full_disk, caplog):
    path = full_disk / "results.jsonl"
    filler = full_disk / "filler"
    os.truncate(filler, filler.stat().st_size - 8192)  # room for a few dozen lines: the disk fills while writing
    output = JsonLines(str(path), max_bytes=10**6)
    with caplog.at_level(logging.INFO, logger="device.daemon"):
        for _ in range(200):
            output.write(record("roses", "tulips", "daisy"))  # no exception, ever
        assert output.lost > 0 and output.problem == f"--jsonl {path}: No space left on device"
        lines = path.read_text().splitlines()
        assert 0 < len(lines) < 200 and all(json.loads(line)["top"] for line in lines), "only whole lines"
        assert len(lines) + output.lost == 200
        os.unlink(filler)
        output.write(record("daisy"))
    output.close()
    assert output.problem is None and json.loads(path.read_text().splitlines()[-1])["top"][0]["label"] == "daisy"
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"--jsonl {path}: No space left on device; results are not written until it can be "
                    "(inference goes on)", f"--jsonl {path}: writing again ({output.lost} records lost meanwhile)"]


def test_json_lines_into_a_device_are_never_rotated(tmp_path):
    output = JsonLines("/dev/full", max_bytes=1)
    output.write(record("roses"))
    output.write(record("roses"))
    output.close()
    assert output.lost == 2 and output.rotations == 0 and os.path.exists("/dev/full")
    assert output.problem == "--jsonl /dev/full: No space left on device"

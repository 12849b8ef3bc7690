"""Result records, JSON Lines, and events only when the top label changes."""
from __future__ import annotations

import json

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
    output = JsonLines(str(path))
    output.write(record("roses"))
    assert len(path.read_text().splitlines()) == 2, "each line is flushed as it is written"
    output.write(record("daisy"))
    output.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True} and [line["top"][0]["label"] for line in lines[1:]] == ["roses", "daisy"]

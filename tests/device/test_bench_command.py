"""`device bench`: the numbers it promises, measured on real photos."""
from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from device.cli import main


def test_bench_json_has_every_number(flowers_dir, reference_model, capsys):
    assert main(["bench", str(reference_model), "--images", str(flowers_dir / "daisy"),
                 "--runs", "12", "--threads", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["runtime"] == f"ai-edge-litert {version('ai-edge-litert')}"
    assert results["threads"] == 2 and results["runs"] == 12 and results["photos"] == 12
    for key in ("invoke_ms", "end_to_end_ms"):
        latency = results[key]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert results["end_to_end_ms"]["p50"] > results["invoke_ms"]["p50"] * 0.8  # decoding is not free
    assert results["images_per_second"] > 0
    assert 20 < results["peak_rss_mb"] < 4096


def test_bench_prints_a_readable_table(flowers_dir, reference_model, capsys):
    assert main(["bench", str(reference_model), "--images", str(flowers_dir / "roses"), "--runs", "5"]) == 0
    printed = capsys.readouterr().out
    for word in ("invoke", "end-to-end", "images/s", "peak memory", "ai-edge-litert"):
        assert word in printed


def test_bench_needs_real_photos(reference_model, tmp_path, capsys):
    assert main(["bench", str(reference_model)]) == 1
    assert "--images" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("no photos here\n")
    assert main(["bench", str(reference_model), "--images", str(tmp_path)]) == 1
    assert "none of the files under --images is a readable image" in capsys.readouterr().err


@pytest.mark.parametrize("option, message", [
    (["--runs", "0"], "--runs 0: must be at least 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),  # once silently the default thread count
    (["--threads", "-2"], "--threads -2: must be at least 1"),
])
def test_bench_refuses_unusable_numbers(flowers_dir, reference_model, capsys, option, message):
    assert main(["bench", str(reference_model), "--images", str(flowers_dir / "daisy"), *option]) == 1
    assert capsys.readouterr().err == f"device: error: {message}\n"

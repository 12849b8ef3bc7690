"""`device run --collect` as a process: samples on disk, their counts on /api/stats, /metrics and /healthz,
a full disk that pauses collection while inference goes on, and kill -9 in the middle of writing."""
from __future__ import annotations

import os
import resource
import shutil
import signal

import pytest

from device.samples import IMAGE, SIDECAR, complete_names, read_sample
from tests.daemon.test_browser import browser  # noqa: F401  (the real Chromium fixture)
from tests.daemon.test_daemon import parse_metrics


@pytest.fixture
def flower_folder(tmp_path, photos):
    """Three photos of each of the five labels: the model is sure of some and unsure of others."""
    folder = tmp_path / "flowers"
    folder.mkdir()
    for label, paths in photos.items():
        for path in paths:
            shutil.copy(path, folder / f"{label}-{path.name}")
    return folder


def stats(daemon) -> dict:
    return daemon.json("/api/stats")[1]


def test_collects_samples_within_caps_and_budget_and_reports_them(run_daemon, reference_model, flower_folder,
                                                                   tmp_path):
    samples = tmp_path / "data" / "samples"
    (tmp_path / "data").mkdir()
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{flower_folder}", "--source-fps", "30",
                        "--threads", "1", "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                        "--collect", "--collect-on-change", "--collect-random", "0.5",
                        "--collect-max-per-minute", "12", "--collect-budget-mb", "0.12")
    health = daemon.healthy()
    assert health["collect"] == {"state": "on", "reason": None, "folder": str(samples)}
    collect = daemon.wait_for(lambda: (lambda c: c["dropped"].get("cap_per_minute") and c)(stats(daemon)["collect"]),
                              timeout=30, what="the per-minute cap")
    assert sum(collect["kept"].values()) == 12 and collect["kept"]["change"] >= 1
    assert collect["bytes"] <= 120_000 and collect["evicted"]["budget"] >= 1
    labels = stats(daemon)["labels"]
    assert set(labels) <= {"daisy", "dandelion", "roses", "sunflowers", "tulips"} and len(labels) >= 3
    assert all(entry["count"] > 0 and 0 < entry["mean_top_score"] <= 1 for entry in labels.values())

    recent = collect["recent"][0]
    status, thumbnail = daemon.get(f"/api/samples/{recent['name']}.jpg")
    assert status == 200 and thumbnail.startswith(b"\xff\xd8")
    assert daemon.get("/api/samples/../../etc/passwd.jpg")[0] == 404

    metrics = parse_metrics(daemon.get("/metrics")[1].decode())
    assert metrics['bloomkit_samples_kept_total{reason="change"}'] >= 1
    assert metrics['bloomkit_samples_dropped_total{reason="cap_per_minute"}'] >= 1
    assert metrics['bloomkit_samples_evicted_total{reason="budget"}'] >= 1
    assert metrics["bloomkit_collect_paused"] == 0 and 0 < metrics["bloomkit_samples_bytes"] <= 120_000
    assert any(name.startswith("bloomkit_label_mean_top_score{label=") for name in metrics)
    assert daemon.terminate() == 0

    names = complete_names(samples)
    assert names and sorted(os.listdir(samples)) == sorted(n + s for n in names for s in (IMAGE, SIDECAR))
    for name in names:
        sidecar, _ = read_sample(samples, name)
        assert sidecar["source"] == f"folder:{flower_folder}"
        assert sidecar["model"]["sha256"] == health["model"]["sha256"]
        assert set(sidecar["reasons"]) <= {"change", "random"}


def small_files() -> None:
    """A disk that takes no file over 2 kB (RLIMIT_FSIZE: the write fails, as on a full disk)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


def test_a_full_disk_pauses_collection_and_inference_goes_on(run_daemon, reference_model, flower_folder, tmp_path):
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{flower_folder}", "--source-fps", "20",
                        "--threads", "1", "--http", "127.0.0.1:0", "--collect", str(tmp_path / "samples"),
                        "--collect-random", "1", preexec_fn=small_files)
    daemon.healthy()
    health = daemon.wait_for(lambda: (lambda h: h["collect"]["state"] == "paused" and h)(daemon.json("/healthz")[1]),
                             what="the pause")
    assert health["status"] == "ok", "a full samples disk does not make the daemon unhealthy"
    assert "File too large" in health["collect"]["reason"]
    frames = health["frames"]
    daemon.wait_for(lambda: daemon.json("/healthz")[1]["frames"] > frames + 10, what="inference going on")
    collect = stats(daemon)["collect"]
    assert collect["dropped"]["write_failed"] >= 1 and collect["dropped"]["paused"] >= 10
    assert sum(collect["kept"].values()) == 0
    metrics = parse_metrics(daemon.get("/metrics")[1].decode())
    assert any(name.startswith("bloomkit_collect_paused{reason=") and value == 1 for name, value in metrics.items())
    assert any("collect: paused: cannot write samples" in line for line in daemon.log)
    assert daemon.terminate() == 0
    assert complete_names(tmp_path / "samples") == []
    assert not [name for name in os.listdir(tmp_path / "samples") if not name.startswith(".")]


def test_kill_9_while_writing_leaves_only_whole_samples_and_a_restart_cleans_up(run_daemon, reference_model,
                                                                                 flower_folder, tmp_path):
    samples = tmp_path / "samples"
    arguments = ("--model", str(reference_model), "--source", f"folder:{flower_folder}", "--threads", "1",
                 "--http", "127.0.0.1:0", "--collect", str(samples), "--collect-random", "1")
    for _ in range(3):  # at fps 0 with every frame kept, the worker is always in the middle of a sample
        daemon = run_daemon(*arguments)
        daemon.healthy()
        daemon.wait_for(lambda: sum(stats(daemon)["collect"]["kept"].values()) >= 5, what="samples")
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(10)
        for name in complete_names(samples):
            read_sample(samples, name)  # raises if a sample that looks whole is not
    whole = set(complete_names(samples))
    leftovers = [name for name in os.listdir(samples) if os.path.splitext(name)[0] not in whole]
    daemon = run_daemon(*arguments, "--collect-max-per-minute", "0")  # cleans up, writes nothing
    daemon.healthy()
    assert daemon.terminate() == 0
    assert sorted(os.listdir(samples)) == sorted(n + s for n in whole for s in (IMAGE, SIDECAR))
    assert any(f"removed {len(leftovers)} partial samples" in line for line in daemon.log) == bool(leftovers)


@pytest.mark.parametrize("options, message", [
    (["--collect", "s", "--collect-uncertain", "0.9:0.2"],
     "device: error: --collect-uncertain 0.9:0.2: need 0 <= LO < HI <= 1"),
    (["--collect", "s", "--collect-budget-mb", "-5"], "device: error: --collect-budget-mb -5.0: must be positive"),
    (["--collect"], "device: error: --collect needs a folder: give --collect DIR, or --data-dir DIR"),
    (["--collect", "s", "--collect-labels", "rosse"],
     "device: error: --collect-labels rosse: not a label of the model"),
])
def test_bad_collect_options_are_one_line_and_a_non_zero_exit(reference_model, flower_folder, tmp_path, options,
                                                              message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "device.cli", "run", "--model", str(reference_model), "--source",
                           f"folder:{flower_folder}", "--http", "off", *options], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr


def test_the_live_page_shows_the_last_samples_kept(browser, run_daemon, reference_model,  # noqa: F811
                                                   flower_folder, tmp_path):
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{flower_folder}", "--source-fps", "10",
                        "--threads", "1", "--http", "127.0.0.1:0", "--collect", str(tmp_path / "samples"),
                        "--collect-on-change")
    daemon.healthy()
    browser.get(daemon.url + "/")
    daemon.wait_for(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#sample-list img')].filter(i => i.naturalWidth === 160).length") >= 2,
        timeout=20, what="sample thumbnails on the page")
    captions = [item.text for item in browser.find_elements("css selector", "#sample-list li")]
    assert all(caption.endswith("change") and "%" in caption for caption in captions), captions
    assert browser.find_element("id", "samples").is_displayed()
    assert daemon.terminate() == 0

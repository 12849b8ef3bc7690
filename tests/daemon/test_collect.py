"""Samples on disk: whole or absent, within the budget (oldest evicted first), every loss counted."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from device import imaging
from device.daemon.collect import Collector
from device.daemon.collect_config import CollectError
from device.errors import UserError
from device.daemon.sampling import policy_from
from device.daemon.sources import Frame
from device.samples import IMAGE, SIDECAR, SampleStore, complete_names, read_sample
from testkit.processes import wait_until

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@dataclass(frozen=True)
class _Info:
    name: str = "efficientnet_lite0"
    version: str = "v1"


class Model:
    """What the collector reads of a classifier: its labels, name, version and sha256."""

    labels = LABELS
    info = _Info()
    model_sha256 = "ab" * 32


@pytest.fixture(scope="module")
def frame(flowers_dir) -> Frame:
    image = imaging.decode(sorted((flowers_dir / "roses").glob("*.jpg"))[0])
    return Frame(image, image)


def unsure() -> np.ndarray:
    return np.array([0.1, 0.1, 0.45, 0.05, 0.3], dtype=np.float32)


def wait_for(condition, timeout=10.0):
    assert wait_until(condition, timeout, step=0.01), "timed out"


def collector(folder: Path, budget: int = 200_000_000, **policy) -> Collector:
    return Collector(folder, policy_from(**policy), budget, "folder:test")


def test_a_sample_is_the_full_frame_and_a_sidecar_with_every_score(tmp_path, frame):
    c = collector(tmp_path / "samples")
    c.offer(frame, unsure(), Model(), 7)
    c.offer(frame, np.array([0.96, 0.01, 0.01, 0.01, 0.01], dtype=np.float32), Model(), 8)  # sure: not kept
    c.close()
    [name] = complete_names(tmp_path / "samples")
    sidecar, jpeg = read_sample(tmp_path / "samples", name)
    decoded = imaging.decode(jpeg)
    assert decoded.shape == frame.view.shape, "full resolution, as the camera gave it"
    difference = np.abs(decoded.astype(int) - frame.view.astype(int)).mean()
    swapped = np.abs(decoded[..., ::-1].astype(int) - frame.view.astype(int)).mean()
    assert difference < 8 and swapped > 2 * difference, "the frame's colours, in RGB order"
    assert sidecar["scores"] == pytest.approx(dict(zip(LABELS, unsure().tolist())), abs=1e-6)
    assert sidecar["top"]["label"] == "roses" and sidecar["reasons"] == ["uncertain"]
    assert sidecar["model"] == {"name": "efficientnet_lite0", "version": "v1", "sha256": "ab" * 32}
    assert sidecar["source"] == "folder:test" and sidecar["frame"] == 7 and sidecar["host"]
    assert sidecar["time"].endswith("Z") and sidecar["image"]["sha256"] == hashlib.sha256(jpeg).hexdigest()
    assert sorted(os.listdir(tmp_path / "samples")) == [name + IMAGE, name + SIDECAR], "no temporary files"
    stats = c.stats()
    assert stats["kept"]["uncertain"] == 1 and stats["samples"] == 1
    assert stats["bytes"] == sum(p.stat().st_size for p in (tmp_path / "samples").iterdir())
    assert stats["recent"][0]["name"] == name and "width" not in stats["recent"][0]
    thumbnail = imaging.decode(c.thumbnail(name))
    assert thumbnail.shape[1] == 160
    small = imaging.resize(frame.view, (thumbnail.shape[0], 160))
    assert np.abs(thumbnail.astype(int) - small.astype(int)).mean() < 12, "the frame's colours, small"


def test_a_thumbnail_is_made_only_when_asked_and_the_worker_yields_the_cpu_to_inference(tmp_path, frame):
    c = collector(tmp_path)
    for number in range(2):
        c.offer(frame, unsure(), Model(), number)
    wait_for(lambda: c.store.count == 2)
    worker = Path(f"/proc/self/task/{c._worker.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(worker[16]) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10), "the worker's nice value"
    c.close()
    first, second = complete_names(tmp_path)
    assert all("thumbnail" not in sample for sample in c.recent), "no thumbnail before the page asks"
    assert c.thumbnail(second).startswith(b"\xff\xd8") and c.thumbnail(second) is c.thumbnail(second)
    for suffix in (IMAGE, SIDECAR):
        (tmp_path / (first + suffix)).unlink()  # brought home by `fab collect`
    assert c.thumbnail(first) is None and c.thumbnail("20990101T000000.000Z-000001") is None


def test_the_budget_holds_and_the_oldest_samples_go_first(tmp_path, frame):
    c = collector(tmp_path, budget=10**9, margin=1.0)
    c.offer(frame, unsure(), Model(), 1)
    wait_for(lambda: c.store.count == 1)
    one = c.store.total
    c.close()
    c = collector(tmp_path, budget=int(one * 3.5), margin=1.0)
    for number in range(2, 9):
        c.offer(frame, unsure(), Model(), number)
        wait_for(lambda: sum(c.kept.values()) == number - 1)
    c.close()
    names = complete_names(tmp_path)
    assert len(names) == 3 and c.store.total <= int(one * 3.5)
    assert [read_sample(tmp_path, n)[0]["frame"] for n in names] == [6, 7, 8], "the newest stay"
    assert c.stats()["evicted"] == {"budget": 5}


def test_a_full_queue_drops_and_counts_and_inference_never_waits(tmp_path, frame, monkeypatch):
    c = collector(tmp_path, margin=1.0)
    gate = threading.Event()
    write = c.store.write
    monkeypatch.setattr(c.store, "write", lambda *args: (gate.wait(10), write(*args))[1])  # a very slow disk
    started = time.perf_counter()
    for number in range(30):
        c.offer(frame, unsure(), Model(), number)
    assert time.perf_counter() - started < 0.5
    gate.set()
    c.close(timeout=10)
    kept, dropped = sum(c.kept.values()), c.dropped["queue_full"]
    assert kept + dropped == 30 and dropped >= 30 - 9, "queue of 8, and one being written"
    assert len(complete_names(tmp_path)) == kept


def test_an_unwritable_folder_pauses_collection_with_the_reason(tmp_path, frame):
    (tmp_path / "file").write_text("not a folder")
    c = collector(tmp_path / "file" / "samples", margin=1.0)
    assert c.status()["state"] == "paused" and "Not a directory" in c.status()["reason"]
    for number in range(5):
        c.offer(frame, unsure(), Model(), number)
    c.close()
    assert c.dropped == {"paused": 5} and not c.kept


def test_a_paused_collection_tries_again_and_resumes(tmp_path, frame, monkeypatch):
    from device.daemon import collect

    monkeypatch.setattr(collect, "RETRY_S", 0.2)
    blocker = tmp_path / "samples"
    blocker.write_text("in the way")
    c = collector(blocker, margin=1.0)
    assert c.status()["state"] == "paused"
    blocker.unlink()  # the user fixed it
    time.sleep(0.25)
    c.offer(frame, unsure(), Model(), 1)
    wait_for(lambda: c.status()["state"] == "on")
    c.close()
    assert len(complete_names(blocker)) == 1


def test_leftovers_of_a_crash_are_removed_at_start_and_whole_samples_kept(tmp_path, frame):
    c = collector(tmp_path, margin=1.0)
    c.offer(frame, unsure(), Model(), 1)
    c.close()
    [whole] = complete_names(tmp_path)
    (tmp_path / ".20261129T000000.000Z-000002.jpg.x1y2.tmp").write_bytes(b"\xff\xd8 half")
    (tmp_path / "20261129T000000.000Z-000003.jpg").write_bytes(b"\xff\xd8 a jpeg without its sidecar")
    (tmp_path / "notes.txt").write_text("someone else's file")
    store = SampleStore(tmp_path, 10**9)
    assert store.open() == 2
    assert sorted(os.listdir(tmp_path)) == sorted([whole + IMAGE, whole + SIDECAR, "notes.txt"])
    assert store.count == 1


def test_collect_settings_default_folder_and_bad_values(tmp_path):
    from tests.daemon.test_config import parse

    settings = parse("--model", "m.tflite", "--data-dir", str(tmp_path), "--collect")
    assert settings.collect.samples_folder(settings.data_dir) == tmp_path / "samples"
    assert settings.collect.budget_bytes == 200_000_000
    assert parse("--model", "m", "--collect", "x", "--collect-budget-mb", "0.5").collect.budget_bytes == 500_000
    with pytest.raises(CollectError, match="--collect needs a folder"):
        parse("--model", "m.tflite", "--collect")
    with pytest.raises(UserError, match="--collect-budget-mb -5: must be positive"):
        parse("--model", "m.tflite", "--collect", "x", "--collect-budget-mb", "-5")
    assert not parse("--model", "m.tflite").collect.enabled


def test_collect_options_in_a_config_file(tmp_path):
    from tests.daemon.test_config import parse

    (tmp_path / "data").mkdir()
    config = tmp_path / "device.toml"
    config.write_text('model = "m.tflite"\ndata_dir = "data"\ncollect = true\ncollect-uncertain = "0.2:0.5"\n'
                      'collect_labels = ["roses", "tulips"]\ncollect_on_change = true\ncollect_max_per_hour = 30\n'
                      'collect_budget_mb = 50\n')
    settings = parse("--config", str(config))
    assert settings.collect.samples_folder(settings.data_dir) == tmp_path / "data" / "samples"
    assert settings.collect.budget_bytes == 50_000_000
    policy = settings.collect.policy
    assert policy.band == (0.2, 0.5) and policy.labels == {"roses", "tulips"} and policy.on_change
    assert policy.caps[1] == (30, 3600.0)
    config.write_text('model = "m.tflite"\ncollect = "kept"\ncollect_uncertain = "0.9:0.2"\n')
    with pytest.raises(UserError, match="0.9:0.2"):
        parse("--config", str(config))

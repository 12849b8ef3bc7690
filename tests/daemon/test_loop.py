"""The inference loop in-process, on the real model and real photos: results, change events, frame gaps."""
from __future__ import annotations

import json
import shutil
import threading
import time

from device.classifier import Classifier
from device.daemon.config import Settings
from device.daemon.loop import Daemon, FrameGapError
from device.daemon.models import ModelWatcher
from device.daemon.sources import open_source
from tests.daemon.conftest import write_video


def start(settings: Settings) -> tuple[Daemon, threading.Thread, list]:
    models = ModelWatcher(settings.model, lambda path: Classifier(path, threads=1, top_k=settings.top_k))
    source = open_source(settings.source, models.classifier.input_size, settings.source_fps)
    daemon = Daemon(settings, source, models)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as error:
            errors.append(error)
        finally:
            daemon.close()
            source.close()

    thread = threading.Thread(target=run)
    thread.start()
    return daemon, thread, errors


def test_on_change_writes_an_event_only_when_the_top_label_changes(tmp_path, photos, reference_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, photo in enumerate(photos["daisy"][:2] + photos["roses"][:2]):
        shutil.copy(photo, folder / f"{index}.jpg")  # replayed daisy, daisy, roses, roses, daisy, …
    jsonl = tmp_path / "events.jsonl"
    settings = Settings(model=reference_model, source=f"folder:{folder}", on_change=True, jsonl=str(jsonl), http="off")
    daemon, thread, errors = start(settings)
    try:
        deadline = time.monotonic() + 30
        while daemon.counters.inferences < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.stop()
        thread.join(5)
    assert not errors
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    labels = [event["label"] for event in events]
    assert labels[:2] == ["daisy", "roses"]
    assert all(a != b for a, b in zip(labels, labels[1:])), "an event only when the label changes"
    assert all(event["previous"] == before for event, before in zip(events[1:], labels))
    assert len(events) <= daemon.counters.inferences // 2 + 1
    assert daemon.latest()["top"][0]["label"] in ("daisy", "roses")


def test_a_silent_source_ends_the_loop_with_a_frame_gap_error(tmp_path, photos, reference_model):
    video = write_video(tmp_path / "short.avi", photos["tulips"][:1], fps=10, frames_each=3)
    settings = Settings(model=reference_model, source=str(video), max_frame_gap=1.0, http="off")
    daemon, thread, errors = start(settings)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], FrameGapError)
    assert "the video has ended" in str(errors[0])
    assert daemon.counters.inferences == 3
    assert daemon.health()["status"] == "unhealthy"


def test_health_waits_for_the_first_frame(tmp_path, reference_model, photos):
    video = write_video(tmp_path / "v.avi", photos["daisy"][:1])
    models = ModelWatcher(reference_model, Classifier)
    source = open_source(str(video), models.classifier.input_size)
    daemon = Daemon(Settings(model=reference_model, http="off"), source, models)
    health = daemon.health()
    source.close()
    assert health["status"] == "unhealthy" and health["reason"] == "waiting for the first frame"
    assert set(health) >= {"status", "reason", "model", "fps", "frames", "uptime_s"}
    assert set(health["model"]) == {"path", "name", "version", "sha256"}


def test_health_stays_ok_while_a_slow_device_spends_seconds_on_one_frame(tmp_path, photos, reference_model):
    class SlowClassifier(Classifier):  # a Pi under emulation, or a big model: seconds per frame
        def scores(self, image):
            time.sleep(2.5)
            return super().scores(image)

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos["daisy"][0], folder)
    settings = Settings(model=reference_model, source=f"folder:{folder}", source_fps=0, http="off")
    models = ModelWatcher(reference_model, lambda path: SlowClassifier(path, threads=1))
    source = open_source(settings.source, models.classifier.input_size, settings.source_fps)
    daemon = Daemon(settings, source, models)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.counters.inferences < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.3)  # the second frame is now older than the 2 s a fast device is allowed
        health = daemon.health()
    finally:
        daemon.stop()
        thread.join(10)
        daemon.close()
        source.close()
    assert daemon.counters.inferences >= 1
    assert health["status"] == "ok", health["reason"]

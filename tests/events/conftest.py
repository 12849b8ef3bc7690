"""Events test fixtures: a real Mosquitto per test, a real flowers model, and scenes made of real photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device import imaging
from tests.conftest import SHARED
from tests.daemon.conftest import run_daemon  # noqa: F401 (a fixture these tests use)
from tests.events.broker import Mosquitto, Recorder


@pytest.fixture(scope="session")
def flowers_model(request) -> Path:
    """The Model Maker reference model when ../shared has it, else one our trainer makes (on a user's clone)."""
    path = SHARED / "models" / "model-maker-flowers-int8.tflite"
    return path if path.is_file() else request.getfixturevalue("trained_model_path")


@pytest.fixture(scope="session")
def clear_photos(flowers_model, flowers_dir) -> dict[str, Path]:
    """For each label, the photo among its first ten that the model is surest of: scenes that test the
    events, not the model's accuracy."""
    from device.classifier import Classifier

    classifier = Classifier(flowers_model, threads=1)
    best = {}
    for label in classifier.labels:
        candidates = sorted((flowers_dir / label).glob("*.jpg"))[:10]
        best[label] = max(candidates,
                          key=lambda path: classifier.scores(imaging.decode(path))[classifier.labels.index(label)])
    return best


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def recorders():
    """Subscribers that are disconnected at the end of the test."""
    made: list[Recorder] = []

    def make(*args, **kwargs) -> Recorder:
        made.append(Recorder(*args, **kwargs))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()


def write_scene(folder: Path, shots: list[tuple[str, Path, int]]) -> Path:
    """A folder replayed in name order: each (name, photo, copies) is one photo shown for `copies` frames."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for name, photo, copies in shots:
        data = photo.read_bytes()
        for _ in range(copies):
            (folder / f"{index:04d}-{name}.jpg").write_bytes(data)
            index += 1
    return folder


def side_by_side(left: Path, right: Path, destination: Path, size: tuple[int, int] = (240, 240)) -> Path:
    """One frame with two photos next to each other: two flower pots in one camera view."""
    halves = [imaging.resize(imaging.decode(photo), size) for photo in (left, right)]
    cv2.imwrite(str(destination), cv2.cvtColor(np.hstack(halves), cv2.COLOR_RGB2BGR))
    return destination

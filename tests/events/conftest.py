"""Events test fixtures: a real Mosquitto per test, a real flowers model, and scenes made of real photos."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.daemon.conftest import run_daemon  # noqa: F401 (a fixture these tests use)
from tests.events.broker import Mosquitto, Recorder
from tests.events.scenes import clearest_photos


@pytest.fixture(scope="session")
def flowers_model(request) -> Path:
    """The Model Maker reference model when ../shared has it, else one our trainer makes (on a user's clone)."""
    path = SHARED / "models" / "model-maker-flowers-int8.tflite"
    return path if path.is_file() else request.getfixturevalue("trained_model_path")


@pytest.fixture(scope="session")
def clear_photos(flowers_model, flowers_dir) -> dict[str, Path]:
    """For each label, the photo among its first ten that the model is surest of: scenes that test the
    events, not the model's accuracy."""
    return clearest_photos(flowers_model, flowers_dir)


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

"""Events test fixtures: a real Mosquitto per test, a real flowers model, the photos it is surest of."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require
from tests.daemon.conftest import run_daemon  # noqa: F401 (a fixture these tests use)
from testkit.mosquitto import BINARY, Mosquitto, Recorder
from testkit.scenes import clearest_photos


@pytest.fixture(scope="session")
def clear_photos(reference_model, flowers_dir) -> dict[str, Path]:
    """For each label, the photo among its first ten that the model is surest of: scenes that test the
    events, not the model's accuracy."""
    return clearest_photos(reference_model, flowers_dir)


@pytest.fixture
def mosquitto_installed() -> None:
    """Debian's mosquitto, which .ci/run installs: the tests that start a broker need it."""
    require(Path(BINARY).exists(), "mosquitto is not installed (apt-get install mosquitto)")


@pytest.fixture
def broker(tmp_path, mosquitto_installed):
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

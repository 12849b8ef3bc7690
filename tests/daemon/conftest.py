"""Daemon test helpers: real flower photos, videos made from them, and `device run` in a subprocess."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import imaging
from testkit.daemon_process import DaemonProcess

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@pytest.fixture(scope="session")
def photos(flowers_dir) -> dict[str, list[Path]]:
    """Three photos of each class, the same ones every run."""
    return {label: sorted((flowers_dir / label).glob("*.jpg"))[:3] for label in LABELS}


@pytest.fixture
def rose_folder(tmp_path, photos) -> Path:
    """Three rose photos, for a `folder:` source."""
    folder = tmp_path / "roses"
    folder.mkdir()
    for photo in photos["roses"]:
        shutil.copy(photo, folder)
    return folder


def write_video(path: Path, images: list[Path], fps: int = 10, frames_each: int = 5, size=(320, 240)) -> Path:
    """An MJPG .avi that shows each photo for `frames_each` frames, as a camera pointed at it would."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for image in images:
        bgr = cv2.cvtColor(imaging.resize(imaging.decode(image), (size[1], size[0])), cv2.COLOR_RGB2BGR)
        for _ in range(frames_each):
            writer.write(bgr)
    writer.release()
    return path


@pytest.fixture
def run_daemon():
    """Start `device run` processes; each is killed at the end of the test if still running."""
    started: list[DaemonProcess] = []

    def start(*args: str, **options) -> DaemonProcess:
        daemon = DaemonProcess(*args, **options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

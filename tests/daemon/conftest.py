"""Daemon test helpers: real flower photos, videos made from them, and `device run` in a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import imaging

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@pytest.fixture(scope="session")
def photos(flowers_dir) -> dict[str, list[Path]]:
    """Three photos of each class, the same ones every run."""
    return {label: sorted((flowers_dir / label).glob("*.jpg"))[:3] for label in LABELS}


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


class DaemonProcess:
    """`device run ARGS` in a subprocess, with its HTTP address read from its log."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        command = [sys.executable, "-m", "device.cli", "run", *args]
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.log: list[str] = []
        self.url: str | None = None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            if "live page on " in line:
                self.url = line.split("live page on ", 1)[1].strip().rstrip("/")

    def wait_for(self, condition, timeout: float = 30.0, what: str = "the daemon"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"{what}: the daemon exited {self.process.returncode}: {self.log}")
            time.sleep(0.1)
        raise AssertionError(f"{what}: timed out; log: {self.log}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.get(path)
        return status, json.loads(body)

    def healthy(self, timeout: float = 30.0) -> dict:
        self.wait_for(lambda: self.url, timeout, "the HTTP address")
        return self.wait_for(lambda: (lambda r: r[0] == 200 and r[1])(self.json("/healthz")), timeout, "/healthz 200")

    def terminate(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run_daemon():
    """Start `device run` processes; each is killed at the end of the test if still running."""
    started: list[DaemonProcess] = []

    def start(*args: str, cwd: Path | None = None) -> DaemonProcess:
        daemon = DaemonProcess(*args, cwd=cwd)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

"""Latest frame wins: inference always gets the newest frame, stale ones are dropped and counted."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from device.daemon.capture import Capture, LatestFrame
from device.daemon.sources import Frame, FrameUnavailable


def frame(number: int) -> Frame:
    image = np.full((2, 2, 3), number % 256, np.uint8)
    return Frame(image, image, captured=float(number))


def test_a_new_frame_replaces_an_untaken_one_and_counts_it_dropped():
    slot = LatestFrame()
    for number in range(3):
        slot.put(frame(number))
    assert slot.take(timeout=0).captured == 2
    assert (slot.received, slot.dropped) == (3, 2)
    assert slot.take(timeout=0.05) is None, "a frame is handed out once"
    slot.put(frame(3))
    assert slot.take(timeout=0).captured == 3
    assert slot.dropped == 2


def test_take_waits_for_the_next_frame():
    slot = LatestFrame()
    threading.Timer(0.05, slot.put, [frame(7)]).start()
    began = time.monotonic()
    assert slot.take(timeout=2).captured == 7
    assert time.monotonic() - began < 1


class CountingCamera:
    """A camera delivering numbered frames at `fps`, as fast as a real one would, no faster."""

    name = "counting"

    def __init__(self, fps: float, on_demand: bool = False) -> None:
        self.interval = 1.0 / fps if fps else 0.0
        self.on_demand = on_demand
        self.made = 0
        self.closed = False

    def read(self) -> Frame:
        self.made += 1
        return frame(self.made)

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_slow_inference_always_gets_the_newest_frame_so_latency_never_builds_up():
    camera = CountingCamera(fps=200)
    slot = LatestFrame()
    capture = Capture(camera, slot)
    capture.start()
    lags = []
    try:
        for _ in range(10):
            taken = slot.take(timeout=1)
            lags.append(camera.made - taken.captured)  # frames made since: 0 or 1, never a backlog
            time.sleep(0.03)  # inference six times slower than the camera
    finally:
        capture.stop()
    assert max(lags) <= 1
    assert slot.dropped >= 30
    assert slot.received == slot.dropped + 10 + (1 if slot.take(timeout=0) else 0)


def test_an_on_demand_source_is_pulled_one_frame_per_take_with_nothing_dropped():
    camera = CountingCamera(fps=0, on_demand=True)
    slot = LatestFrame()
    capture = Capture(camera, slot)
    taken = [capture.pull().captured for _ in range(5)]
    assert taken == [1, 2, 3, 4, 5] and camera.made == 5
    assert (slot.received, slot.dropped) == (5, 0)
    sequence, latest = slot.peek()
    assert sequence == 5 and latest.captured == 5, "the live view sees the pulled frames too"


class FlakyCamera(CountingCamera):
    """Delivers nothing for its first `failures` reads."""

    def __init__(self, failures: int) -> None:
        super().__init__(fps=0)
        self.failures = failures
        self.reconnects = 0

    def read(self) -> Frame:
        if self.failures:
            self.failures -= 1
            raise FrameUnavailable("the camera delivers no frames")
        return super().read()

    def reconnect(self) -> None:
        self.reconnects += 1


class CrashingCamera(FlakyCamera):
    """Fails its first reads with a driver error that is not `FrameUnavailable`, as OpenCV's `cv2.error` is."""

    def read(self) -> Frame:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("OpenCV(4.10) error: (-215:Assertion failed)\n !_src.empty()")
        return CountingCamera.read(self)


@pytest.mark.parametrize("camera, problem", [
    (lambda: FlakyCamera(failures=3), "the camera delivers no frames"),
    (lambda: CrashingCamera(failures=3),   # not FrameUnavailable: must not kill the capture thread
     "read failed (RuntimeError: OpenCV(4.10) error: (-215:Assertion failed) !_src.empty())"),
], ids=["no frames", "driver error"])
def test_a_failing_camera_is_retried_with_back_off_and_reported_until_it_recovers(camera, problem):
    camera = camera()
    slot = LatestFrame()
    capture = Capture(camera, slot)
    capture.start()
    try:
        time.sleep(0.1)
        assert capture.is_alive()
        assert capture.problem == problem
        assert slot.take(timeout=5) is not None
        assert capture.problem is None
    finally:
        capture.stop()
    assert camera.reconnects == 3


def test_an_unexpected_driver_error_on_an_on_demand_source_is_reported_not_raised():
    camera = CrashingCamera(failures=1)
    capture = Capture(camera, LatestFrame())
    assert capture.pull() is None
    assert capture.problem.startswith("read failed (RuntimeError")
    assert capture.pull() is not None

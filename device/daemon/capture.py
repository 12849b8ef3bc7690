"""The capture thread and the one-frame mailbox between it and inference (the latest frame wins)."""
from __future__ import annotations

import logging
import threading
import time

from device.errors import one_line
from device.daemon.sources import Frame, FrameSource, FrameUnavailable

log = logging.getLogger("device.daemon")

FIRST_RETRY_S = 0.25
LAST_RETRY_S = 5.0


class LatestFrame:
    """Holds only the newest frame: a frame nobody took before the next one arrived is dropped (and counted),
    so inference always sees the present, never a queue of the past."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._frame: Frame | None = None
        self._fresh = False
        self.received = 0
        self.dropped = 0
        self.last_received: float | None = None  # time.monotonic() of the newest frame

    def put(self, frame: Frame) -> None:
        with self._changed:
            if self._fresh:
                self.dropped += 1
            self._frame, self._fresh = frame, True
            self.received += 1
            self.last_received = time.monotonic()
            self._changed.notify_all()

    def take(self, timeout: float) -> Frame | None:
        """The newest frame not taken yet, waiting up to `timeout` seconds for one; None if none came."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._fresh, timeout):
                return None
            self._fresh = False
            return self._frame

    def peek(self) -> tuple[int, Frame | None]:
        """The newest frame, taken or not, with its sequence number (for the live view)."""
        with self._changed:
            return self.received, self._frame


class Capture(threading.Thread):
    """Reads frames from the source into a `LatestFrame`, pacing them and retrying a stalled source with back-off.

    Started for sources that deliver frames on their own clock (cameras, streams, videos, a paced
    folder); a source that makes frames on demand is `pull`ed by the inference loop instead.
    """

    def __init__(self, source: FrameSource, slot: LatestFrame) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.slot = slot
        self.problem: str | None = None  # why no frames are coming, while that is so
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop_event.set()
        if self.ident is not None:  # started
            self.join(timeout)

    def run(self) -> None:
        retry_in = FIRST_RETRY_S
        due = time.monotonic()
        stopping = self._stop_event
        while not stopping.is_set():
            if self.source.interval:
                due = max(due + self.source.interval, time.monotonic())
                if stopping.wait(due - time.monotonic()):
                    break
            try:
                frame = self._read()
            except FrameUnavailable as error:
                self._report(str(error))
                if stopping.wait(retry_in):
                    break
                retry_in = min(retry_in * 2, LAST_RETRY_S)
                self._reconnect()
                continue
            if self.problem is not None:
                log.info("source %s: frames are flowing again", self.source.name)
                self.problem = None
            retry_in = FIRST_RETRY_S
            self.slot.put(frame)

    def pull(self) -> Frame | None:
        """Read a frame now, in the caller's thread, from a source that makes frames on demand (a replay).

        Such a source has no clock of its own for a thread to keep up with, and handing each frame
        across threads would cost inference time.
        """
        try:
            frame = self._read()
        except FrameUnavailable as error:
            self._report(str(error))
            self._stop_event.wait(FIRST_RETRY_S)
            return None
        self.slot.put(frame)
        return self.slot.take(timeout=0)

    def _read(self) -> Frame:
        """The source's next frame; any failure of the driver (a `cv2.error`, say) counts as no frame,
        so that it is retried and shown on /healthz instead of killing the capture thread."""
        try:
            return self.source.read()
        except FrameUnavailable:
            raise
        except Exception as error:  # a driver can fail in any way; the thread must outlive it
            raise FrameUnavailable(f"read failed ({error.__class__.__name__}: {one_line(error)})") from None

    def _report(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("source %s: %s; retrying", self.source.name, problem)
        self.problem = problem

    def _reconnect(self) -> None:
        try:
            self.source.reconnect()
        except Exception as error:  # a driver can fail in any way while a camera is gone
            self._report(f"reconnecting failed ({one_line(error)})")

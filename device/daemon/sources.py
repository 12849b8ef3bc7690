"""Frame sources: the Pi camera (Picamera2), OpenCV cameras, videos and streams, and a folder replay.

Every source hands out `Frame`s whose pixels are RGB, whatever the camera's own byte order, so the
rest of the daemon never has to think about colour order again.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from device import imaging
from device.errors import one_line
from device.errors import UserError

log = logging.getLogger("device.daemon")

PICAMERA2 = "picamera2"
CAMERA_TIMEOUT_S = 2.0  # a Pi camera delivers a frame every 1/30 s or so; this long without one is a stall
VIEW_SIZE = (640, 480)  # (width, height) of the Pi camera's main stream, the one the live page shows
STREAM_TIMEOUTS_MS = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2000)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class SourceError(UserError):
    """The frame source cannot be opened at start-up (no camera, unreadable video, empty folder)."""


class FrameUnavailable(Exception):
    """A running source delivered no frame this time; `str()` says why (shown on /healthz)."""


@dataclass(frozen=True)
class Frame:
    """One captured frame: `image` is what the model sees, `view` what the live page shows (both RGB)."""

    image: np.ndarray
    view: np.ndarray
    captured: float = field(default_factory=time.monotonic)


class FrameSource(Protocol):
    name: str
    on_demand: bool  # True: frames are made when asked for (a replay, read by the inference loop itself)
    interval: float  # seconds between frames the capture thread paces reads at; 0: the source paces itself

    def read(self) -> Frame:
        """The next frame; raises `FrameUnavailable` when there is none."""

    def reconnect(self) -> None:
        """Try to get a stalled source going again (called with back-off by the capture thread)."""

    def close(self) -> None:
        """Release the camera or file."""


def open_source(spec: str | None, input_size: tuple[int, int], fps: float = 0.0, loop: bool = False) -> FrameSource:
    """Open the source `spec` names (None: the Pi camera when picamera2 is installed, else opencv:0);
    `input_size` (height, width) sizes the Pi camera's inference stream.

    `fps` paces a folder replay or a video file (0: a folder as fast as inference takes its frames, a video
    at its own rate); `loop` replays a video file from the start when it ends.
    """
    if spec is None:
        spec = PICAMERA2 if importlib.util.find_spec("picamera2") is not None else "opencv:0"
        try:
            return open_source(spec, input_size, fps, loop)
        except SourceError as error:
            raise SourceError(f"{error} (no --source given, so {spec} was tried)") from None
    if spec == PICAMERA2 or spec.startswith(PICAMERA2 + ":"):
        camera = spec.partition(":")[2] or "0"
        return Picamera2Source(_number(camera, spec), input_size)
    if spec.startswith("folder:"):
        return FolderSource(Path(spec[len("folder:"):]), fps)
    if spec.startswith("opencv:"):
        return OpenCVSource(spec, _number(spec[len("opencv:"):], spec))
    if "://" in spec:
        return OpenCVSource(spec, spec)
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"source {spec}: no such video file "
                          "(sources: picamera2, opencv:N, a video, a URL, folder:DIR)")
    return OpenCVSource(spec, str(path), retry=False, fps=fps, loop=loop)


def _number(text: str, spec: str) -> int:
    if not text.isdigit():
        raise SourceError(f"source {spec}: expected a camera number, as in opencv:0")
    return int(text)


class Picamera2Source:
    """The Pi camera: one preview configuration, `main` (RGB888) for the view, `lores` (YUV420) for the model."""

    on_demand = False
    interval = 0.0

    def __init__(self, camera_num: int, input_size: tuple[int, int]) -> None:
        self.name = f"picamera2:{camera_num}"
        os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:WARN")  # libcamera logs every INFO line otherwise
        try:
            from picamera2 import Picamera2
            from libcamera import ColorSpace
        except ImportError:
            raise SourceError("source picamera2: the picamera2 package is not installed "
                              "(apt install python3-picamera2, or use --source opencv:0)") from None
        if camera_num >= len(Picamera2.global_camera_info()):
            raise SourceError(f"source {self.name}: no Pi camera found "
                              "(check the ribbon cable and `rpicam-hello --list-cameras`)")
        height, width = input_size
        lores = (min(_even(width), VIEW_SIZE[0]), min(_even(height), VIEW_SIZE[1]))
        try:
            self._camera = Picamera2(camera_num)
            # SMPTE 170M is the limited-range BT.601 YUV that OpenCV's I420 conversion expects.
            config = self._camera.create_preview_configuration(
                main={"format": "RGB888", "size": VIEW_SIZE},
                lores={"format": "YUV420", "size": lores},
                colour_space=ColorSpace.Smpte170m(),
                buffer_count=4,
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, OSError, IndexError) as error:
            raise SourceError(f"source {self.name}: cannot start the camera ({one_line(error)})") from None
        self._lores_width = config["lores"]["size"][0]

    def read(self) -> Frame:
        try:  # both streams from one request, so the view shows the frame that was classified
            job = self._camera.capture_arrays(["main", "lores"], wait=False)
            (main, lores), _metadata = self._camera.wait(job, timeout=CAMERA_TIMEOUT_S)
        except (TimeoutError, futures.TimeoutError):  # picamera2's Future timeout: the builtin only from 3.11
            raise FrameUnavailable(f"the camera delivered no frame in {CAMERA_TIMEOUT_S:g} s") from None
        except (RuntimeError, OSError) as error:
            raise FrameUnavailable(f"camera error ({one_line(error)})") from None
        # RGB888 arrays hold B,G,R bytes; the lores YUV420 array is (h*3/2, stride), stride ≥ width.
        view = cv2.cvtColor(main, cv2.COLOR_BGR2RGB)
        image = np.ascontiguousarray(cv2.cvtColor(lores, cv2.COLOR_YUV2RGB_I420)[:, : self._lores_width])
        return Frame(image, view)

    def reconnect(self) -> None:
        self._camera.cancel_all_and_flush()  # picamera2's clean-up after a timed-out capture
        self._camera.stop()
        self._camera.start()

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


class OpenCVSource:
    """A USB camera, a video file or a network stream, read through OpenCV (BGR, converted to RGB).

    A camera or stream that stops is reopened (the capture thread retries with back-off); a video file
    that ends has ended, unless `loop`.
    """

    def __init__(self, name: str, target: int | str, retry: bool = True, fps: float = 0.0, loop: bool = False) -> None:
        self.name = name
        self.on_demand = False
        self._target = target
        self._retry = retry
        self._kind = "the camera" if isinstance(target, int) else "the stream"
        self._loop = loop
        self._capture = self._open()
        if not self._capture.isOpened():
            self._capture.release()
            problem = "no camera there" if isinstance(target, int) else "cannot open it"
            raise SourceError(f"source {name}: {problem}")
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        # A video file is read faster than real time unless paced at its own rate, as a camera would be.
        own_fps = self._capture.get(cv2.CAP_PROP_FPS) if not retry else 0.0
        pace = fps or own_fps
        self.interval = 1.0 / pace if pace > 0 else 0.0
        self._ended = False

    def _open(self) -> cv2.VideoCapture:
        # OpenCV logs every backend it tries on a missing camera, and FFmpeg its own complaints ("moov atom
        # not found", "Connection refused"); the one-line error says it better. OpenCV reads FFmpeg's level
        # once, at its first FFmpeg open, so it is set here, before any; a user's own setting wins.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        with _opencv_silenced():
            if isinstance(self._target, str) and "://" in self._target:  # never hang on a dead host
                return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, STREAM_TIMEOUTS_MS)
            return cv2.VideoCapture(self._target)

    def read(self) -> Frame:
        if self._ended:
            raise FrameUnavailable("the video has ended")
        with _opencv_silenced():  # a stream that stalls: "[ WARN ] … Stream timeout triggered after 2000 ms"
            ok, bgr = self._capture.read()
            if not ok and self._loop:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._capture.read()
        if not ok or bgr is None:
            self._ended = not self._retry
            raise FrameUnavailable("the video has ended" if self._ended else f"{self._kind} delivers no frames")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return Frame(rgb, rgb)

    def reconnect(self) -> None:
        if self._retry:
            self._capture.release()
            self._capture = self._open()

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """Replays a folder of images in a loop, decoded once and served from memory like a camera's frames.

    At `fps` 0 a frame is made whenever the previous one was taken: as fast as inference goes.
    """

    def __init__(self, folder: Path, fps: float) -> None:
        self.name = f"folder:{folder}"
        self.on_demand = fps <= 0
        if not folder.is_dir():
            raise SourceError(f"source {self.name}: not a folder")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise SourceError(f"source {self.name}: no images in it")
        self._images = []
        for path in paths:  # one bad file among many photos should not stop the replay
            try:
                image = imaging.decode(path)
            except imaging.ImageError as error:
                log.warning("source %s: skipping %s: %s", self.name, path, error)
                continue
            image.setflags(write=False)
            self._images.append(image)
        if not self._images:
            raise SourceError(f"source {self.name}: none of its {len(paths)} image files is readable")
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self._index = 0

    def read(self) -> Frame:
        image = self._images[self._index]
        self._index = (self._index + 1) % len(self._images)
        return Frame(image, image)

    def reconnect(self) -> None:
        """A folder in memory never stalls."""

    def close(self) -> None:
        self._images = []


@contextlib.contextmanager
def _opencv_silenced() -> Iterator[None]:
    """OpenCV's own log lines off during the block: what they say, the daemon says in one line of its own
    (the reason on /healthz). OpenCV's log level is its own switch, so no descriptor is swapped for it."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _even(value: int) -> int:
    return max(2, int(value) - int(value) % 2)

"""A stand-in for the Pi camera stack (picamera2 + libcamera), which cannot run without a camera.

It mimics the real API where the daemon touches it (picamera2 0.3.x, `picamera2/picamera2.py` and
`request.py`): `Picamera2(camera_num)`, `global_camera_info()`, `create_preview_configuration()` with
the real defaults and dict shape, `configure` filling in `stride`/`framesize`, `start`, `capture_array(s)`,
`stop`, `close`. Frames are a real photo as the sensor would deliver it: `RGB888` arrays hold
B,G,R bytes; `XBGR8888` holds R,G,B,255; `YUV420` is I420 as a (height*3/2, stride) array whose rows
are padded to a 64-byte stride, in the configured colour space (sYCC: full range; SMPTE 170M: limited).
"""
from __future__ import annotations

import concurrent.futures
import sys
import types

import cv2
import numpy as np

STRIDE_ALIGN = 64


class ColorSpace:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<libcamera.ColorSpace '{self.name}'>"

    @staticmethod
    def Sycc() -> "ColorSpace":  # noqa: N802 (libcamera's names)
        return ColorSpace("sYCC")

    @staticmethod
    def Smpte170m() -> "ColorSpace":  # noqa: N802
        return ColorSpace("SMPTE170M")

    @staticmethod
    def Rec709() -> "ColorSpace":  # noqa: N802
        return ColorSpace("Rec709")


class Transform:
    def __repr__(self) -> str:
        return "<libcamera.Transform 'identity'>"


class Picamera2:
    """Sees `scene` (an RGB photo) through `cameras` attached cameras; counts how often it is opened."""

    scene: np.ndarray | None = None
    cameras = 1
    opened = 0

    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/soc/i2c0mux/i2c@1/imx708@1a/{n}",
                 "Num": n} for n in range(Picamera2.cameras)]

    def __init__(self, camera_num: int = 0, tuning: object = None) -> None:
        if camera_num >= Picamera2.cameras:
            raise IndexError("list index out of range")
        Picamera2.opened += 1
        self.camera_config: dict | None = None
        self.started = False
        self.closed = False
        self.frames = 0  # requests completed
        self.flushes = 0
        self.stalled = False  # True: like a dislodged cable, no request ever completes

    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=Transform(),  # noqa: B006
                                     colour_space=ColorSpace.Sycc(), buffer_count=4, controls={}, display="main",
                                     encode="main", queue=True, sensor={}, use_case="preview") -> dict:
        main = _stream({"format": "XBGR8888", "size": (640, 480), "preserve_ar": True}, main)
        if lores is not None:
            lores = _stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        raw = None if raw is None else {"format": "SRGGB10_CSI2P", "size": main["size"], **raw}
        controls = {"NoiseReductionMode": 3, "FrameDurationLimits": (100, 83333)} | controls
        return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores, "raw": raw,
                "controls": controls, "sensor": sensor, "display": display, "encode": encode}

    def configure(self, camera_config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in camera_config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        lores = camera_config["lores"]
        if lores is not None:
            (lores_width, lores_height), (main_width, main_height) = lores["size"], camera_config["main"]["size"]
            if lores_width > main_width or lores_height > main_height:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")  # the Pi 4's (VC4) rule
        for name in ("main", "lores"):
            stream = camera_config[name]
            if stream is not None:
                width, height = stream["size"]
                stream["stride"] = _stride(stream["format"], width)
                stream["framesize"] = stream["stride"] * (height * 3 // 2 if stream["format"] == "YUV420" else height)
        self.camera_config = camera_config

    def camera_configuration(self) -> dict:
        return self.camera_config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_arrays(self, names: list[str] = ["main"], wait: bool | None = None,  # noqa: B006
                       signal_function=None) -> tuple[list[np.ndarray], dict] | Job:
        """The named streams of one request, with its metadata; a `Job` to `wait` for if `wait=False`."""
        job = Job(self, lambda: ([self._array(name) for name in names],
                                 {"SensorTimestamp": self.frames * 33_333_000, "FrameDuration": 33333}))
        return job if wait is False else job.get_result()

    def capture_array(self, name: str = "main", wait: bool | None = None, signal_function=None) -> np.ndarray | Job:
        job = Job(self, lambda: self._array(name))
        return job if wait is False else job.get_result()

    def wait(self, job: "Job", timeout: float | None = None):
        return job.get_result(timeout)

    def cancel_all_and_flush(self) -> None:
        self.flushes += 1

    def _array(self, name: str) -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera not started")  # the real one would wait forever
        stream = self.camera_config[name]
        width, height = stream["size"]
        rgb = cv2.resize(Picamera2.scene, (width, height), interpolation=cv2.INTER_AREA)
        if stream["format"] == "RGB888":
            return np.ascontiguousarray(rgb[..., ::-1])
        if stream["format"] == "XBGR8888":
            return np.dstack([rgb, np.full((height, width), 255, np.uint8)])
        if stream["format"] == "YUV420":
            return _i420(rgb, stream["stride"], self.camera_config["colour_space"].name == "sYCC")
        raise RuntimeError(f"the fake does not make {stream['format']} frames")

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.stop()
        self.closed = True


class Job:
    """picamera2.job.Job: the result of a capture, once the camera completes a request."""

    def __init__(self, camera: Picamera2, make) -> None:
        self._camera, self._make = camera, make

    def get_result(self, timeout: float | None = None):
        if self._camera.stalled:
            if timeout is None:
                raise AssertionError("the real picamera2 would wait forever here")
            raise concurrent.futures.TimeoutError()  # as Future.result raises it (not the builtin before 3.11)
        self._camera.frames += 1
        return self._make()


def _stream(defaults: dict, updates: dict) -> dict:
    stream = {**defaults, **updates}
    width, height = stream["size"]
    stream["size"] = (width - width % 2, height - height % 2)  # align_stream(optimal=False)
    return stream


def _stride(fmt: str, width: int) -> int:
    bytes_per_pixel = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4, "YUV420": 1}[fmt]
    return -(-width * bytes_per_pixel // STRIDE_ALIGN) * STRIDE_ALIGN


def _i420(rgb: np.ndarray, stride: int, full_range: bool) -> np.ndarray:
    """Planar Y, U, V with each row padded to `stride` (chroma rows to stride/2), as libcamera lays them out."""
    height, width = rgb.shape[:2]
    if full_range:  # JPEG / sYCC: BT.601 over 0..255
        r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
        y = 0.299 * r + 0.587 * g + 0.114 * b
        u = 128 + (b - y) * 0.564
        v = 128 + (r - y) * 0.713
        planes = [np.clip(np.round(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
        y_plane = planes[0]
        u_plane, v_plane = (cv2.resize(p, (width // 2, height // 2), interpolation=cv2.INTER_AREA) for p in planes[1:])
    else:  # OpenCV's I420 conversion is limited-range BT.601, as SMPTE 170M is
        i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
        y_plane = i420[: width * height].reshape(height, width)
        quarter = width * height // 4
        u_plane = i420[width * height: width * height + quarter].reshape(height // 2, width // 2)
        v_plane = i420[width * height + quarter:].reshape(height // 2, width // 2)
    padded = [np.pad(y_plane, ((0, 0), (0, stride - width)), constant_values=0)]
    padded += [np.pad(p, ((0, 0), (0, stride // 2 - width // 2)), constant_values=0) for p in (u_plane, v_plane)]
    return np.concatenate([p.reshape(-1) for p in padded]).reshape(height * 3 // 2, stride)


def install(monkeypatch, scene: np.ndarray, cameras: int = 1) -> type[Picamera2]:
    """Make `import picamera2` and `import libcamera` find the fake, seeing `scene`."""
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = Picamera2
    libcamera = types.ModuleType("libcamera")
    libcamera.ColorSpace, libcamera.Transform = ColorSpace, Transform
    monkeypatch.setenv("LIBCAMERA_LOG_LEVELS", "*:WARN")  # what the source sets; undone after the test
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    monkeypatch.setattr(Picamera2, "scene", scene)
    monkeypatch.setattr(Picamera2, "cameras", cameras)
    monkeypatch.setattr(Picamera2, "opened", 0)
    return Picamera2

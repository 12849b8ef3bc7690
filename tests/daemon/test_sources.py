"""Frame sources: the right colours from the Pi camera (fake) and OpenCV, and clear errors when there is no camera."""
from __future__ import annotations

import concurrent.futures
import logging

import cv2
import numpy as np
import pytest

from device import imaging
from device.classifier import Classifier
from device.daemon.sources import FolderSource, FrameUnavailable, Picamera2Source, SourceError, open_source
from tests.daemon import fake_picamera2
from tests.daemon.conftest import mean_abs_difference, write_video


@pytest.fixture
def sunflower(photos) -> np.ndarray:
    return imaging.decode(photos["sunflowers"][1])  # one the model gets right, at 0.95


def test_picamera2_frames_come_out_rgb_from_bgr_main_and_i420_lores(monkeypatch, sunflower, reference_model):
    camera_class = fake_picamera2.install(monkeypatch, sunflower)
    classifier = Classifier(reference_model)
    source = open_source("picamera2", classifier.input_size)
    try:
        frames = [source.read() for _ in range(3)]
        requests = source._camera.frames
    finally:
        source.close()
    assert requests == 3, "main and lores of a frame come from one request"
    frame = frames[-1]
    expected_view = cv2.resize(sunflower, (640, 480), interpolation=cv2.INTER_AREA)
    expected_image = cv2.resize(sunflower, (224, 224), interpolation=cv2.INTER_AREA)
    assert frame.view.shape == (480, 640, 3) and frame.image.shape == (224, 224, 3)
    assert mean_abs_difference(frame.view, expected_view) < 0.5
    # The lores stream went through YUV 4:2:0 and back (OpenCV's own round trip differs by 5.5 here).
    assert mean_abs_difference(frame.image, expected_image) < 7.0
    assert mean_abs_difference(frame.image, expected_image[..., ::-1]) > 20.0
    assert classifier.classify(frame.image)[0].label == "sunflowers"
    assert camera_class.opened == 1, "Picamera2 must be opened once, not per frame"


def test_picamera2_asks_for_one_preview_configuration_with_main_and_lores(monkeypatch, sunflower):
    fake_picamera2.install(monkeypatch, sunflower)
    source = Picamera2Source(0, (224, 224))
    config = source._camera.camera_configuration()
    source.close()
    assert config["use_case"] == "preview"
    assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (640, 480)
    assert config["lores"]["format"] == "YUV420" and config["lores"]["size"] == (224, 224)
    assert config["lores"]["stride"] == 256  # padded rows, which the source must crop
    assert config["colour_space"].name == "SMPTE170M"  # the limited-range YUV OpenCV's I420 conversion expects


def test_picamera2_lores_is_not_reduced_to_gray(monkeypatch, photos):
    roses = imaging.decode(photos["roses"][0])
    fake_picamera2.install(monkeypatch, roses)
    source = Picamera2Source(0, (224, 224))
    image = source.read().image
    source.close()
    spread = image.astype(np.int16).max(axis=2) - image.astype(np.int16).min(axis=2)
    assert spread.mean() > 20, "the lores frame must keep its colour (U and V planes), not just Y"


class Python310FutureTimeout(Exception):
    """concurrent.futures.TimeoutError as Python 3.10 (Bullseye) defines it: not the builtin TimeoutError."""


@pytest.mark.parametrize("python", ["3.11+", "3.10"])
def test_a_stalled_pi_camera_times_out_and_is_restarted(monkeypatch, sunflower, python):
    if python == "3.10":
        monkeypatch.setattr(concurrent.futures, "TimeoutError", Python310FutureTimeout)
    fake_picamera2.install(monkeypatch, sunflower)
    source = Picamera2Source(0, (224, 224))
    camera = source._camera
    camera.stalled = True  # the cable came loose: capture_arrays would wait forever without a timeout
    with pytest.raises(FrameUnavailable, match="no frame in 2 s"):
        source.read()
    source.reconnect()
    assert camera.flushes == 1 and camera.started
    camera.stalled = False
    assert source.read().image.shape == (224, 224, 3)
    source.close()
    assert camera.closed


def test_no_pi_camera_is_a_one_line_error(monkeypatch, sunflower):
    fake_picamera2.install(monkeypatch, sunflower, cameras=0)
    with pytest.raises(SourceError, match="no Pi camera found"):
        open_source("picamera2", (224, 224))


def test_picamera2_not_installed_is_a_one_line_error(monkeypatch):
    import sys

    monkeypatch.setenv("LIBCAMERA_LOG_LEVELS", "*:WARN")
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="picamera2 package is not installed"):
        open_source("picamera2", (224, 224))


def test_opencv_video_frames_are_rgb_and_not_mirrored(tmp_path, photos):
    asymmetric = photos["sunflowers"][0]
    video = write_video(tmp_path / "one.avi", [asymmetric], fps=10, frames_each=2)
    source = open_source(str(video), (224, 224))
    frame = source.read()
    expected = imaging.resize(imaging.decode(asymmetric), (240, 320))
    assert mean_abs_difference(frame.image, expected) < 6.0  # MJPEG is lossy
    assert mean_abs_difference(frame.image, expected[..., ::-1]) > 20.0
    assert mean_abs_difference(frame.image, expected[:, ::-1]) > 20.0
    assert source.interval == pytest.approx(0.1)  # paced at the video's own rate
    source.read()
    with pytest.raises(FrameUnavailable, match="ended"):
        source.read()
    source.close()


def test_looped_video_starts_again(tmp_path, photos):
    video = write_video(tmp_path / "one.avi", [photos["daisy"][0]], frames_each=2)
    source = open_source(str(video), (224, 224), loop=True)
    frames = [source.read() for _ in range(5)]
    source.close()
    assert len(frames) == 5


@pytest.mark.parametrize("spec, message", [
    ("opencv:7", "no camera there"),
    ("missing.avi", "no such video file"),
    ("folder:/nonexistent", "not a folder"),
    ("opencv:x", "expected a camera number"),
])
def test_unavailable_sources_are_one_line_errors(spec, message):
    with pytest.raises(SourceError, match=message) as error:
        open_source(spec, (224, 224))
    assert "\n" not in str(error.value)


def test_unreadable_video_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(broken), (224, 224))


def test_folder_is_decoded_once_and_replayed_in_a_loop(tmp_path, photos, monkeypatch):
    for label in ("daisy", "roses"):
        (tmp_path / photos[label][0].name).write_bytes(photos[label][0].read_bytes())
    source = FolderSource(tmp_path, fps=0)
    monkeypatch.setattr(imaging, "decode", lambda *_: pytest.fail("decoded again"))
    images = [source.read().image for _ in range(5)]
    assert source.on_demand and source.interval == 0
    assert images[0] is images[2] is images[4] and images[1] is images[3] and images[0] is not images[1]
    assert not images[0].flags.writeable


def test_folder_skips_an_unreadable_image_with_a_warning_naming_it(tmp_path, photos, caplog):
    (tmp_path / photos["daisy"][0].name).write_bytes(photos["daisy"][0].read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="device.daemon"):
        source = FolderSource(tmp_path, fps=0)
    first, second = source.read().image, source.read().image
    assert first is second and first.ndim == 3, "only the readable photo is replayed"
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning == f"source folder:{tmp_path}: skipping {tmp_path / 'broken.jpg'}: not an image"


def test_folder_with_no_readable_image_is_a_one_line_error_naming_it(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SourceError) as error:
        FolderSource(tmp_path, fps=0)
    assert str(error.value) == f"source folder:{tmp_path}: none of its 2 image files is readable"

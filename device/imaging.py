"""Image decoding and preprocessing, shared by training, evaluation, int8 calibration and the device.

Every path that feeds a model goes through these functions, so the device sees exactly what training
saw. The recipe is the one the TFLite Task Library and MediaPipe apply at inference: the whole image
(no crop), a plain bilinear resize to the input size, then the normalization the metadata names.
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from typing import Iterator, Sequence, Union

import cv2
import numpy as np
from PIL import Image, ImageOps

from device.errors import UserError, one_line

ImageSource = Union[str, os.PathLike, bytes]
_EXIF_ORIENTATION = 0x0112
_WARNINGS_LOCK = threading.Lock()


class ImageError(UserError):
    """A file that is not a readable image; the message is one line naming the reason."""


def decode(source: ImageSource) -> np.ndarray:
    """Decode a JPEG, PNG, BMP, GIF (first frame), WebP or TIFF into an H×W×3 uint8 RGB array.

    EXIF rotation is applied, and grayscale (8- or 16-bit), palette, CMYK and alpha images all come
    out as RGB.
    """
    return _decode(source, draft=False)


def check(source: ImageSource) -> None:
    """Raise `ImageError` exactly when `decode` would, but cheaper: a JPEG is decoded at 1/8 scale.

    Lets a data folder be checked up front with the acceptance training will apply later.
    """
    _decode(source, draft=True)


def _decode(source: ImageSource, draft: bool) -> np.ndarray:
    try:
        with _pil_warnings_handled():  # reads only the header
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with image:
            image.seek(0)
            if draft:
                image.draft("RGB", (64, 64))  # JPEG only; every byte is still read
            image.load()  # the costly part, outside the lock, so threads decode in parallel
            with _pil_warnings_handled():
                if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # skip exif_transpose's copy when upright
                    image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise ImageError(f"unreadable image ({one_line(error)})") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError("empty image")
    return rgb


@contextlib.contextmanager
def _pil_warnings_handled() -> Iterator[None]:
    """PIL's advice (palette transparency, odd EXIF) is noise to a user, and a decompression bomb is
    refused. `catch_warnings` changes process-wide state, so decoding threads take turns here."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode.startswith("I;16"):  # 16-bit grayscale: keep the top 8 bits, as PIL would clip at 255
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def resize(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear-resize an H×W×3 image to `size` = (height, width), keeping the whole frame."""
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map uint8 pixels to the model's float input: (pixel − mean) / std, per channel or for all."""
    mean_array = np.asarray(mean, dtype=np.float32)
    std_array = np.asarray(std, dtype=np.float32)
    return (image.astype(np.float32) - mean_array) / std_array


def load(source: ImageSource, size: Sequence[int]) -> np.ndarray:
    """Decode and resize in one step: the uint8 RGB pixels a model of input `size` sees."""
    return resize(decode(source), size)

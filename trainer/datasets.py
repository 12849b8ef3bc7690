"""Where the tutorial's flower_photos set lives, fetched once like `tf.keras.utils.get_file` did.

Kept free of TensorFlow so that tests and light tools can find photos without it.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

FLOWER_PHOTOS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"


class DatasetUnavailable(RuntimeError):
    """The default data set is neither cached nor downloadable."""


def keras_datasets_dir() -> Path:
    """The folder `get_file` caches into (`$KERAS_HOME/datasets`, default `~/.keras/datasets`)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def flower_photos(download: bool = True) -> Path:
    """Return the extracted flower_photos folder, downloading it on first use."""
    target = keras_datasets_dir() / "flower_photos"
    if _has_label_folders(target):
        return target
    if not download:
        raise DatasetUnavailable(f"flower_photos is not cached in {target}")
    try:
        _download_and_extract(FLOWER_PHOTOS_URL, target)
    except (OSError, tarfile.TarError) as error:
        what = "download" if isinstance(error, OSError) else "unpack the download of"
        raise DatasetUnavailable(
            f"could not {what} flower_photos ({error.__class__.__name__}: {' '.join(str(error).split())}); "
            "pass --data DIR to train on a local folder of labelled photos"
        ) from None
    return target


def _has_label_folders(folder: Path) -> bool:
    return folder.is_dir() and any(child.is_dir() for child in folder.iterdir())


def _download_and_extract(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "flower_photos.tgz"
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm.wrapattr(out, "write", total=size, desc="Downloading flower_photos", unit="B",
                               unit_scale=True, unit_divisor=1024, disable=None, leave=False) as counted:
                shutil.copyfileobj(response, counted)
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        # Rename into place last, so an interrupted download never looks like a cached set.
        os.replace(Path(scratch) / "flower_photos", target)

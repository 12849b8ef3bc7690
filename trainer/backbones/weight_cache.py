"""The converted-weight cache: `.npz` files under the user cache dir, checked before use.

Converting a checkpoint is cheap but not free, and the cache makes the second run skip it; the same
goes for a frozen backbone converted to a float .tflite (`cached_bytes`). Each file
records the cache format, the checkpoint it came from and a SHA-256 of its arrays; a file that is
truncated, damaged, from another format or from another checkpoint is converted again and replaced.
`BLOOMKIT_CACHE` moves the cache root (tests point it at a temporary folder).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from device.cache import cache_root

FORMAT_VERSION = 1
_META = "__meta__"


def cache_dir() -> Path:
    """`backbones/` under bloomkit's cache root (`$BLOOMKIT_CACHE`, by default `~/.cache/bloomkit`)."""
    return cache_root() / "backbones"


def cached_weights(name: str, source: str, convert: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The weights cached for `name` if they came from `source` and are intact, else `convert()`, cached."""
    path = cache_dir() / f"{name}.npz"
    weights = read(path, source)
    if weights is None:
        weights = dict(convert())
        try:
            write(path, weights, source)
        except OSError as error:  # a read-only or full disk costs the next run a conversion, nothing more
            warnings.warn(f"could not cache converted weights in {path.parent}: {error.strerror or error}",
                          stacklevel=2)
    return weights


def cached_bytes(name: str, source: str, make: Callable[[], bytes] | None) -> bytes | None:
    """`cached_weights` for one blob, such as a converted .tflite: the same checks, the same atomic
    write. With `make` None, only what is cached already (None if nothing valid is)."""
    if make is None:
        arrays = read(cache_dir() / f"{name}.npz", source)
        return None if arrays is None else arrays["bytes"].tobytes()
    arrays = cached_weights(name, source, lambda: {"bytes": np.frombuffer(make(), dtype=np.uint8)})
    return arrays["bytes"].tobytes()


def read(path: Path, source: str) -> dict[str, np.ndarray] | None:
    """The arrays in `path`, or None when it is missing, damaged, stale or from another `source`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive[_META].tobytes().decode())
            weights = {key: archive[key] for key in archive.files if key != _META}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    expected = {"format": FORMAT_VERSION, "source": source, "sha256": digest(weights)}
    return weights if meta == expected else None


def write(path: Path, weights: Mapping[str, np.ndarray], source: str) -> None:
    """Write atomically, so an interrupted run never leaves a half file under the final name."""
    meta = json.dumps({"format": FORMAT_VERSION, "source": source, "sha256": digest(weights)})
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **weights, **{_META: np.frombuffer(meta.encode(), dtype=np.uint8)})
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def digest(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    sha = hashlib.sha256()
    for key in sorted(weights):
        array = np.ascontiguousarray(weights[key])
        sha.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()

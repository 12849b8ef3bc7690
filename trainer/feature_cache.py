"""A frozen backbone's features of each photo, kept on disk across runs, so retraining after adding photos
runs the backbone on the new photos only.

An entry is keyed by the photo's content (sha256: renaming or moving a photo keeps its entry) and by the
extractor: the feature extractor's .tflite (its architecture and weights), the input size, the
normalization and the preprocessing code. It lives in one SQLite file under `$BLOOMKIT_CACHE/features/`,
read and written a batch at a time, so memory does not grow with the size of the cache. Hashing a photo
is remembered by path, size and mtime, so an unchanged folder is not read again either.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from device.cache import cache_root
from device.digest import sha256_file

if TYPE_CHECKING:
    from trainer.data import DataLoader
    from trainer.model_spec import ModelSpec

BATCH = 256           # rows read or written per statement
DATABASE = "features/features.sqlite"


class Features(NamedTuple):
    """The features of a set of photos, one row each, and how many were computed and how many found cached
    (what `trainer train --json` reports)."""

    rows: np.ndarray
    computed: int
    cached: int
    seconds: float = 0.0  # the pass over the photos: hashing, the cache and the backbone


def features_for(model: bytes, spec: ModelSpec, data: DataLoader,
                 rows: Callable[[DataLoader], Iterable[np.ndarray]]) -> Features:
    """The features of every photo of `data` by the extractor `model` (a .tflite), from the cache where it
    has them; `rows(subset)` computes the others. A cache that cannot be used is warned about, not fatal."""
    began = time.perf_counter()
    return _features_for(model, spec, data, rows)._replace(seconds=time.perf_counter() - began)


def _features_for(model: bytes, spec: ModelSpec, data: DataLoader,
                  rows: Callable[[DataLoader], Iterable[np.ndarray]]) -> Features:
    from trainer.data import DataLoader

    def compute(indexes: Sequence[int]) -> Iterable[np.ndarray]:
        return rows(DataLoader([data.items[i] for i in indexes], data.index_to_label))

    paths = [path for path, _ in data.items]
    try:
        cache = FeatureCache()
    except (OSError, sqlite3.Error) as error:
        print(f"trainer: warning: feature cache not used ({error})", file=sys.stderr)
        computed: np.ndarray | None = None
        for index, row in enumerate(rows(data)):
            computed = _put(computed, [index], row, len(paths))
        return Features(computed if computed is not None else np.zeros((0, 0), dtype=np.float32), len(paths), 0)
    try:
        return cached_features(cache, extractor_key(model, spec.input_size, spec.mean, spec.std), paths, compute)
    finally:
        cache.close()


def extractor_key(model: bytes, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> str:
    """What the features of a photo depend on besides the photo: the extractor, its input and the pixels' path."""
    digest = hashlib.sha256(model)
    digest.update(repr((tuple(input_size), tuple(mean), tuple(std))).encode())
    digest.update(_preprocessing_code())
    return digest.hexdigest()


def _preprocessing_code() -> bytes:
    """`device.imaging` and the libraries it decodes and resizes with: a change there changes the pixels."""
    from device import imaging

    versions = []
    for name in ("pillow", "opencv-python-headless", "opencv-python"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name}=={metadata.version(name)}")
    return Path(imaging.__file__).read_bytes() + ";".join(versions).encode()


class FeatureCache:
    """The SQLite file: `features(extractor, photo, data)` and the hash memo `photos(path, size, mtime, sha256)`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / DATABASE
        self._warned = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS features (extractor TEXT, photo TEXT, data BLOB, "
                             "PRIMARY KEY (extractor, photo)) WITHOUT ROWID")
            self._db.execute("CREATE TABLE IF NOT EXISTS photos (path TEXT PRIMARY KEY, size INTEGER, "
                             "mtime INTEGER, sha256 TEXT)")

    def close(self) -> None:
        self._db.close()

    def photo_hashes(self, paths: Sequence[str]) -> list[str]:
        """The sha256 of each file's content, read again only for files whose size or mtime changed."""
        hashes: list[str] = []
        for chunk in _chunks(list(paths)):
            chunk = [os.path.abspath(path) for path in chunk]
            stats = [os.stat(path) for path in chunk]
            marks = ",".join("?" * len(chunk))
            known = {row[0]: row[1:] for row in self._db.execute(
                f"SELECT path, size, mtime, sha256 FROM photos WHERE path IN ({marks})", chunk)}
            fresh = []
            for path, stat in zip(chunk, stats):
                memo = known.get(path)
                if memo is not None and memo[:2] == (stat.st_size, stat.st_mtime_ns):
                    hashes.append(memo[2])
                else:
                    hashes.append(sha256_file(path))
                    fresh.append((path, stat.st_size, stat.st_mtime_ns, hashes[-1]))
            with contextlib.suppress(sqlite3.Error), self._db:  # a memo not kept only costs a re-read
                self._db.executemany("INSERT OR REPLACE INTO photos VALUES (?, ?, ?, ?)", fresh)
        return hashes

    def lookup(self, extractor: str, photos: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(photo hash, features) of the photos cached for `extractor`, a batch at a time."""
        for chunk in _chunks(sorted(set(photos))):
            marks = ",".join("?" * len(chunk))
            for photo, data in self._db.execute(
                    f"SELECT photo, data FROM features WHERE extractor = ? AND photo IN ({marks})",
                    [extractor, *chunk]):
                yield photo, np.frombuffer(data, dtype=np.float32)

    def store(self, extractor: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Keep `rows`; a cache that cannot take them (a full disk) costs a warning, not the run."""
        if not rows:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                                     [(extractor, photo, np.asarray(row, dtype=np.float32).tobytes())
                                      for photo, row in rows])
        except sqlite3.Error as error:
            if not self._warned:
                print(f"trainer: warning: features not kept in {self.path} ({error})", file=sys.stderr)
                self._warned = True


def cached_features(cache: FeatureCache, extractor: str, paths: Sequence[str],
                    compute: Callable[[Sequence[int]], Iterator[np.ndarray]]) -> Features:
    """The features of every path, in order: from the cache where it has them, else `compute(indexes)`
    (features of those paths, in that order), stored a batch at a time as they come (an interrupted run
    keeps what it computed)."""
    photos = cache.photo_hashes(paths)
    rows: np.ndarray | None = None
    where: dict[str, list[int]] = {}
    for index, photo in enumerate(photos):
        where.setdefault(photo, []).append(index)
    found = set()
    for photo, row in cache.lookup(extractor, photos):
        rows = _put(rows, where[photo], row, len(paths))
        found.add(photo)
    missing = [index for index, photo in enumerate(photos) if photo not in found]
    pending: list[tuple[str, np.ndarray]] = []
    done: set[str] = set()
    for index, row in zip(missing, compute(missing) if missing else ()):
        rows = _put(rows, [index], row, len(paths))
        if photos[index] not in done:  # the same photo twice in the data: computed once is enough to keep
            done.add(photos[index])
            pending.append((photos[index], row))
        if len(pending) >= BATCH:
            cache.store(extractor, pending)
            pending = []
    cache.store(extractor, pending)
    return Features(rows if rows is not None else np.zeros((0, 0), dtype=np.float32),
                    len(missing), len(paths) - len(missing))


def _put(rows: np.ndarray | None, indexes: list[int], row: np.ndarray, total: int) -> np.ndarray:
    """`rows` (made for `total` rows at the first) with `row` at `indexes`: one array, filled as rows come."""
    if rows is None:
        rows = np.empty((total, row.shape[-1]), dtype=np.float32)
    rows[indexes] = row
    return rows


def _chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start: start + size]

"""`DataLoader`: a folder of labelled photos, checked once, split per label, streamed through `tf.data`.

Listing and checking the folder needs no TensorFlow (so `trainer evaluate` runs without it); only
`dataset()` builds a pipeline. Pixels always come from `device.imaging`, as on the device.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from device import imaging
from device.errors import UserError
from device.prefetch import map_ahead
from device.runtime import default_threads

MAX_LISTED_SKIPS = 10


class DataError(UserError):
    """A data folder that cannot be trained or evaluated on."""


class SkippedFilesWarning(UserWarning):
    """Some files in a data folder are not readable images and were left out."""


class DataLoader:
    """Labelled image files: `index_to_label[i]` names label `i`; `size` files, in a fixed shuffled order."""

    def __init__(self, items: Sequence[tuple[str, int]], index_to_label: Sequence[str],
                 skipped: Sequence[tuple[str, str]] = ()):
        self.items = list(items)
        self.index_to_label = list(index_to_label)
        self.skipped = list(skipped)  # (path, reason) of every file left out when loading

    @classmethod
    def from_folder(cls, filename: str | os.PathLike, shuffle: bool = True, seed: int = 0) -> "DataLoader":
        """Load one sub-folder per label (labels sorted by name), skipping files that are not images.

        Unreadable files are reported in one `SkippedFilesWarning`; hidden files are ignored.
        """
        root = Path(filename)
        if not root.is_dir():
            raise DataError(f"data folder not found: {root}")
        label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(label_dirs) < 2:
            raise DataError(f"{root} needs one sub-folder per label and at least two labels, "
                            f"found {len(label_dirs)}")
        broken = [p.name for p in label_dirs if "\n" in p.name or "\r" in p.name]
        if broken:
            raise DataError(f"label folder {broken[0]!r} in {root} has a line break in its name, and labels.txt "
                            "holds one label a line: rename the folder")
        files = [(path, index) for index, label_dir in enumerate(label_dirs)
                 for path in sorted(label_dir.rglob("*"))
                 if path.is_file() and not path.name.startswith(".")]
        problems = _check_images([path for path, _ in files])
        items = [(str(path), index) for (path, index), problem in zip(files, problems) if problem is None]
        skipped = [(str(path.relative_to(root)), problem)
                   for (path, _), problem in zip(files, problems) if problem is not None]
        if skipped:
            warnings.warn(SkippedFilesWarning(_skipped_message(skipped, len(files))), stacklevel=2)
        counts = np.bincount([index for _, index in items], minlength=len(label_dirs))
        empty = [label_dirs[i].name for i in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(f"no readable images for label(s) {', '.join(empty)} in {root}")
        if shuffle:
            random.Random(seed).shuffle(items)
        return cls(items, [p.name for p in label_dirs], skipped)

    @property
    def size(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.index_to_label)

    @property
    def labels(self) -> np.ndarray:
        """The label index of every item, in order."""
        return np.array([index for _, index in self.items], dtype=np.int64)

    def split(self, fraction: float, seed: int = 0) -> tuple["DataLoader", "DataLoader"]:
        """Split into (first, rest) with `fraction` of each label's images in `first`, reproducibly.

        Both parts keep this loader's order, so the labels stay mixed.
        """
        in_first = self.split_mask(fraction, seed)
        return self.subset(in_first), self.subset(~in_first)

    def split_mask(self, fraction: float, seed: int = 0) -> np.ndarray:
        """Which items `split` puts first: `round(n × fraction)` of each label's n, chosen by `seed`."""
        if not 0 < fraction < 1:
            raise DataError(f"the split fraction must be between 0 and 1, got {fraction}")
        rng = np.random.default_rng(seed)
        labels = self.labels
        in_first = np.zeros(len(labels), dtype=bool)
        for label in range(self.num_classes):
            members = np.flatnonzero(labels == label)
            in_first[rng.permutation(members)[: round(len(members) * fraction)]] = True
        return in_first

    def subset(self, chosen: np.ndarray) -> "DataLoader":
        """The items where `chosen` is true, in this loader's order."""
        return DataLoader([item for item, keep in zip(self.items, chosen) if keep], self.index_to_label, self.skipped)

    def images(self, size: Sequence[int], workers: int | None = None) -> Iterator[np.ndarray]:
        """Every image as the device sees it (uint8 RGB resized to `size`), in order, decoded a few
        ahead in `workers` threads (default: one a core); never all in memory at once."""
        paths = [path for path, _ in self.items]
        for _, image in map_ahead(lambda path: _load(path, size), paths, workers=workers or default_threads()):
            yield image

    def dataset(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                batch_size: int | None = None, one_hot: bool = True,
                augment: Callable | None = None, shuffle_seed: int | None = None):
        """A `tf.data.Dataset` of (normalized float image, label): decoded in parallel, never all at once.

        `augment` maps a batch of normalized images to augmented ones; `shuffle_seed` shuffles every
        pass over the data (reproducibly).
        """
        import trainer._quiet_tensorflow  # noqa: F401  (before TensorFlow)
        import tensorflow as tf

        height, width = int(size[0]), int(size[1])

        def load(path: bytes) -> np.ndarray:
            return imaging.normalize(_load(path.decode(), (height, width)), mean, std)

        def load_in_graph(path, label):
            image = tf.numpy_function(load, [path], tf.float32, stateful=False)
            image.set_shape((height, width, 3))
            return image, (tf.one_hot(label, self.num_classes) if one_hot else label)

        paths = [path for path, _ in self.items]
        ds = tf.data.Dataset.from_tensor_slices((paths, self.labels))
        if shuffle_seed is not None:
            ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.map(load_in_graph, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if batch_size:
            ds = ds.batch(batch_size)
            if augment is not None:
                ds = ds.map(lambda images, labels: (augment(images), labels),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def _load(path: str, size: Sequence[int]) -> np.ndarray:
    try:
        return imaging.load(path, size)
    except imaging.ImageError as error:  # it was readable when the folder was loaded
        raise DataError(f"{path} can no longer be read: {error}") from None


@contextlib.contextmanager
def photo_errors() -> Iterator[None]:
    """Give back the one-line `DataError` of a photo that failed inside a `dataset()` pipeline, which
    TensorFlow wraps in an error of its own with the Python traceback appended."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        found = re.search(r"DataError: ([^\n]*)", error.message)
        if found is None:
            raise
        raise DataError(found.group(1)) from None


def check_batch_fits(train_data: DataLoader, batch_size: int) -> None:
    """Model Maker's rule: an epoch is `size // batch_size` steps, so at least one full batch."""
    if train_data.size < batch_size:
        raise DataError(f"{train_data.size} training images are fewer than the batch size "
                        f"{batch_size}: add images or use a smaller batch size")


def load_folder(folder: str | os.PathLike) -> DataLoader:
    """`DataLoader.from_folder` for the command line: the skipped-files warning becomes one
    `trainer: warning:` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedFilesWarning)
        data = DataLoader.from_folder(folder)
    for warning in caught:
        if issubclass(warning.category, SkippedFilesWarning):
            print(f"trainer: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return data


def _check_images(paths: Sequence[Path]) -> list[str | None]:
    """The reason each file is not a readable image, or None: a cheap reduced-size decode in threads, a
    bounded window of files ahead (so tens of thousands of files never wait in memory at once)."""
    workers = min(8, default_threads() * 2)
    checked = map_ahead(_image_problem, paths, workers=workers, ahead=workers * 4)
    return [problem for _, problem in tqdm(checked, total=len(paths), desc="Checking images", unit="img",
                                           disable=None, leave=False)]


def _image_problem(path: Path) -> str | None:
    """`device.imaging`'s own verdict, so a file kept here also decodes in training and on the device."""
    if path.stat().st_size == 0:
        return "empty file"
    try:
        imaging.check(path)
    except imaging.ImageError as error:
        return str(error)
    return None


def _skipped_message(skipped: Sequence[tuple[str, str]], total: int) -> str:
    listed = ", ".join(f"{path} ({reason})" for path, reason in skipped[:MAX_LISTED_SKIPS])
    more = f" and {len(skipped) - MAX_LISTED_SKIPS} more" if len(skipped) > MAX_LISTED_SKIPS else ""
    return f"skipped {len(skipped)} of {total} files that are not readable images: {listed}{more}"

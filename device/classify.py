"""Classify every image under a folder: decode in a small thread pool while the interpreter runs.

The interpreter is the bottleneck worth keeping busy; JPEG decoding and resizing (which release the
GIL) happen a few images ahead of it in worker threads (`device.prefetch`).
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

import numpy as np

from device import evaluation, imaging
from device.atomic import atomic_write
from device.classifier import Category, Classifier
from device.errors import UserError, one_line
from device.prefetch import map_ahead

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FolderError(UserError):
    """The folder to classify is missing, empty, or not laid out as --eval needs."""


@dataclass(frozen=True)
class ImageResult:
    """One file's outcome: its categories and processing time, or why it could not be read."""
    path: str                       # relative to the folder, with forward slashes
    top: tuple[Category, ...] = ()
    latency_ms: float | None = None  # decode + preprocess + invoke + postprocess, queueing excluded
    error: str | None = None


def list_files(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every non-hidden file under `folder`, sorted; hidden files and folders are skipped."""
    if not folder.exists():
        raise FolderError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a folder")
    excluded = {path.resolve() for path in exclude}
    files = sorted(
        path for path in folder.rglob("*")
        if not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file() and path.resolve() not in excluded)
    if not files:
        raise FolderError(f"{folder}: no files to classify")
    return files


def classify_files(classifier: Classifier, folder: Path, files: Sequence[Path],
                   decoders: int = 2, ahead: int = 8) -> Iterator[ImageResult]:
    """Yield one result per file, in order. Up to `ahead` files are decoded ahead of the interpreter."""

    def prepare(path: Path) -> tuple[np.ndarray | None, str | None, float]:
        start = time.perf_counter()
        try:
            return classifier.prepare(imaging.decode(path)), None, time.perf_counter() - start
        except imaging.ImageError as error:
            return None, str(error), 0.0

    for path, (tensor, error, prepare_s) in map_ahead(prepare, files, workers=decoders, ahead=ahead):
        name = path.relative_to(folder).as_posix()
        if tensor is None:
            yield ImageResult(name, error=error)
            continue
        start = time.perf_counter()
        top = classifier.top(classifier.infer(tensor))
        latency_ms = (prepare_s + time.perf_counter() - start) * 1000
        yield ImageResult(name, tuple(top), round(latency_ms, 3))


def format_for(path: Path | None, chosen: str | None) -> str:
    """The records format: the one asked for, else the output's extension, else CSV."""
    if chosen:
        return chosen
    if path is None:
        return "csv"
    try:
        return _EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise UserError(f"cannot tell the format of {path.name} from its extension: "
                        f"use .csv or .jsonl, or --format csv|jsonl") from None


class OutputError(UserError):
    """The records cannot be written: no such folder, a read-only one, a directory in the way, a full disk."""


@contextlib.contextmanager
def records_output(path: Path | None) -> Iterator[IO[str]]:
    """Standard output, or a temporary file beside `path` that replaces it when the block succeeds.

    Entered before any work, so a folder that is missing or read-only, or a `path` that is a directory,
    is refused before the first image. Every write in the block goes here, so an `OSError` in it (a full
    disk) is a failure to write: one `OutputError`, an old `path` left as it was.
    """
    name = "standard output" if path is None else f"--out {path}"
    if path is not None and path.is_dir():
        raise OutputError(f"{name}: is a directory")
    try:
        with atomic_write(path, newline="") if path else contextlib.nullcontext(sys.stdout) as file:
            yield file
            file.flush()
    except BrokenPipeError:
        raise  # a reader that stopped early (`| head`): the command line ends quietly
    except OSError as error:
        raise OutputError(f"cannot write {name}: {error.strerror or one_line(error)}") from None


class RecordWriter:
    """Writes results as JSON Lines, or as CSV with columns path, top1, score1, …, topK, scoreK,
    latency_ms, error (empty cells where a file has fewer categories, or failed)."""

    def __init__(self, file: IO[str], format: str, columns: int) -> None:
        self._file, self._format = file, format
        if format == "csv":
            self._csv = csv.writer(file, lineterminator="\n")
            ranks = [name for k in range(1, columns + 1) for name in (f"top{k}", f"score{k}")]
            self._columns = columns
            self._csv.writerow(["path", *ranks, "latency_ms", "error"])

    def write(self, result: ImageResult) -> None:
        if self._format == "jsonl":
            record = {"path": result.path, "error": result.error} if result.error else {
                "path": result.path, "latency_ms": result.latency_ms,
                "top": [{"label": c.label, "score": round(c.score, 6)} for c in result.top]}
            self._file.write(json.dumps(record) + "\n")
            return
        ranks = [cell for c in result.top for cell in (c.label, f"{c.score:.6g}")]
        ranks += [""] * (2 * self._columns - len(ranks))
        latency = "" if result.latency_ms is None else f"{result.latency_ms:.3f}"
        self._csv.writerow([result.path, *ranks, latency, result.error or ""])


@dataclass
class Tally:
    """The run's summary, built up one result at a time; with `evaluate`, top-1 against the sub-folder."""
    labels: tuple[str, ...]
    evaluate: bool = False
    started: float = field(default_factory=time.perf_counter)
    images: int = 0
    skipped: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    truths: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)  # len(labels): no category

    def add(self, result: ImageResult) -> None:
        if result.error:
            self.skipped.append({"path": result.path, "error": result.error})
            return
        self.images += 1
        predicted = result.top[0].label if result.top else None
        self.counts[predicted] += 1
        if self.evaluate:
            self.truths.append(self.labels.index(result.path.split("/")[0]))
            self.predictions.append(result.top[0].index if result.top else len(self.labels))

    def summary(self) -> dict:
        elapsed = time.perf_counter() - self.started
        summary = {
            "images": self.images,
            "skipped": self.skipped,
            "labels": {label: self.counts[label] for label in self.labels},
            "unclassified": self.counts[None],
            "seconds": round(elapsed, 3),
            "images_per_second": round(self.images / elapsed, 2) if elapsed > 0 else None,
        }
        if self.evaluate:
            # "no category" is one more class, which no image truly is: its row goes, its column stays.
            confusion = evaluation.confusion_matrix(self.truths, self.predictions, len(self.labels) + 1)[:-1]
            summary["accuracy"] = evaluation.accuracy(confusion)
            summary["recall"] = {label: scores["recall"]
                                 for label, scores in evaluation.per_label(confusion, self.labels).items()
                                 if scores["support"]}
            summary["confusion"] = {"labels": list(self.labels), "columns": [*self.labels, "(none)"],
                                    "matrix": confusion.tolist()}
        return summary


def check_eval_layout(folder: Path, files: Sequence[Path], labels: Sequence[str]) -> None:
    """--eval takes each image's true label from its top sub-folder, which must be a model label."""
    tops = {path.relative_to(folder).parts[0] if len(path.relative_to(folder).parts) > 1 else None
            for path in files}
    if None in tops:
        raise FolderError(f"--eval: {folder} has files outside label sub-folders "
                          f"(expected one sub-folder per label: {', '.join(labels)})")
    strangers = sorted(tops - set(labels))
    if strangers:
        raise FolderError(f"--eval: sub-folders {', '.join(strangers)} are not labels of the model "
                          f"({', '.join(labels)})")

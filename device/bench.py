"""Latency and throughput of a model on this device, measured on real photos.

Three numbers answer three questions: invoke-only latency (how fast is the model on this runtime
and thread count), end-to-end latency per image (decode + preprocess + invoke + postprocess, one
image at a time, as a live camera frame would see it), and images per second through the same
pipelined engine `device classify` uses (decoding overlapped with inference).
"""
from __future__ import annotations

import itertools
import resource
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device import classify, imaging
from device.classifier import Classifier
from device.errors import UserError
from device.options import check_number
from device.runtime import runtime_name

WARMUP_RUNS = 5
_KEPT_TENSORS = 16  # prepared inputs cycled through for invoke-only timing


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3)}


def run(classifier: Classifier, folder: Path, runs: int, threads: int) -> dict:
    """Measure `classifier` on the photos under `folder`; `runs` timed images per measurement."""
    check_number("--runs", runs, minimum=1)
    photos, tensors = _readable_photos(classifier, classify.list_files(folder), runs)
    for tensor in itertools.islice(itertools.cycle(tensors), WARMUP_RUNS):
        classifier.infer(tensor)

    invoke_ms = []
    for tensor in itertools.islice(itertools.cycle(tensors), runs):
        start = time.perf_counter()
        classifier.infer(tensor)
        invoke_ms.append((time.perf_counter() - start) * 1000)

    end_to_end_ms = []
    for photo in itertools.islice(itertools.cycle(photos), runs):
        start = time.perf_counter()
        classifier.classify(imaging.decode(photo))
        end_to_end_ms.append((time.perf_counter() - start) * 1000)

    pipelined = list(itertools.islice(itertools.cycle(photos), runs))
    start = time.perf_counter()
    for _ in classify.classify_files(classifier, folder, pipelined):
        pass
    images_per_second = runs / (time.perf_counter() - start)

    return {
        "model": classifier.model_path,
        "runtime": runtime_name(),
        "threads": threads,
        "runs": runs,
        "photos": len(photos),
        "invoke_ms": percentiles(invoke_ms),
        "end_to_end_ms": percentiles(end_to_end_ms),
        "images_per_second": round(images_per_second, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _readable_photos(classifier: Classifier, files: Sequence[Path], runs: int) -> tuple[list[Path], list[np.ndarray]]:
    """Up to `runs` files that decode, and prepared inputs for the first few of them."""
    photos: list[Path] = []
    tensors: list[np.ndarray] = []
    for path in files:
        try:
            tensor = classifier.prepare(imaging.decode(path))
        except imaging.ImageError:
            continue
        photos.append(path)
        if len(tensors) < _KEPT_TENSORS:
            tensors.append(tensor)
        if len(photos) >= runs:
            break
    if not photos:
        raise UserError("none of the files under --images is a readable image")
    return photos, tensors


def _peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

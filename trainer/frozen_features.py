"""A frozen backbone's features, computed by the device's engine, once per set of photos.

While the backbone keeps its ImageNet weights it is the same function in every run, so its float
.tflite is converted once and cached (`EfficientNetLiteSpec.frozen_feature_extractor_tflite`), and
LiteRT with XNNPACK runs it several times faster than TensorFlow does. `trainer train` starts the
features in a thread as soon as the photos are listed (`start`): with the .tflite cached this needs
no TensorFlow, which loads meanwhile; the classifier then collects them (`features`).
"""
from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from device import imaging
from device import runtime
from device.runtime import load_interpreter
from trainer import feature_cache
from trainer.data import DataLoader
from trainer.model_spec import ModelSpec

_started: dict[tuple, Future] = {}


def start(spec: ModelSpec, datasets: Sequence[DataLoader]) -> None:
    """Compute the features of `datasets` in a background thread, if the spec's backbone is cached."""
    if runtime.is_tensorflow():
        return  # no LiteRT: loading the interpreter would import TensorFlow, and noisily, ahead of its time
    model = spec.frozen_feature_extractor_tflite(cached_only=True)
    if model is None:
        return
    interpreter = load_interpreter(model)  # not in the thread: loading, like importing TensorFlow, captures stderr
    futures = [(data, Future()) for data in datasets]
    for data, future in futures:
        _started[_key(spec, data)] = future

    def work() -> None:
        for data, future in futures:
            try:
                future.set_result(compute(model, interpreter, spec, data))
            except BaseException as error:  # handed to whoever collects the features
                future.set_exception(error)

    # A daemon: an interrupted run exits at once instead of waiting for the photos left.
    threading.Thread(target=work, name="features", daemon=True).start()


def features(spec: ModelSpec, data: DataLoader) -> np.ndarray | None:
    """The features of every photo of `data`, from `start` or computed now; None when the spec's
    backbone has no .tflite (a user's own backbone), so TensorFlow must compute them."""
    future = _started.pop(_key(spec, data), None)
    if future is not None:
        return future.result()
    model = spec.frozen_feature_extractor_tflite()
    return None if model is None else compute(model, load_interpreter(model), spec, data)


def compute(model: bytes, interpreter: Any, spec: ModelSpec, data: DataLoader) -> np.ndarray:
    """The features of every photo of `data`: those of earlier runs from the feature cache, the others by
    the `interpreter` of `model`, a float feature extractor."""
    return feature_cache.features_for(model, spec, data, functools.partial(_rows, interpreter, spec))


def _rows(interpreter: Any, spec: ModelSpec, data: DataLoader) -> Iterator[np.ndarray]:
    """The `interpreter` over every photo of `data`, preprocessed as the spec says."""
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    for image in tqdm(data.images(spec.input_size), total=data.size, desc="Extracting features", unit="img",
                      disable=None, leave=False):
        interpreter.set_tensor(source, imaging.normalize(image, spec.mean, spec.std)[None])
        interpreter.invoke()
        yield interpreter.get_tensor(target)[0].copy()


def _key(spec: ModelSpec, data: DataLoader) -> tuple:
    return spec, tuple(data.items)

"""A frozen backbone's features, computed by the device's engine, once per set of photos.

While the backbone keeps its ImageNet weights it is the same function in every run, so its float
.tflite is converted once and cached (`extractor_tflite`), and LiteRT with XNNPACK runs it several
times faster than TensorFlow does. `trainer train` starts the features in a thread as soon as the
photos are listed (`start`): with the .tflite cached this needs no TensorFlow, which loads meanwhile;
the classifier is handed the returned `FeaturesAhead` and collects them from it.
"""
from __future__ import annotations

import functools
import importlib.metadata
import threading
from concurrent.futures import Future
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from device import imaging
from device import runtime
from device.runtime import load_interpreter
from trainer import feature_cache
from trainer.feature_cache import Features
from trainer.data import DataLoader
from trainer.model_spec import ModelSpec


class FeaturesAhead:
    """Features of some data sets, being computed in a background thread; each is collected once."""

    def __init__(self, pending: Sequence[tuple[DataLoader, Future]]):
        self._pending = list(pending)

    def take(self, data: DataLoader) -> Features | None:
        """The features of `data` (this very loader) if they were started here, else None."""
        for index, (started, future) in enumerate(self._pending):
            if started is data:
                del self._pending[index]
                return future.result()
        return None

    def __len__(self) -> int:
        """How many data sets are still to be collected."""
        return len(self._pending)


def extractor_tflite(spec: ModelSpec, cached_only: bool = False) -> bytes | None:
    """The spec's ImageNet feature extractor as a float .tflite for one image, converted once and cached.

    None for a user's own backbone (its ops may not all convert: TensorFlow computes its features),
    and None if `cached_only` and it is not cached yet: reading the cache needs no TensorFlow.
    """
    from trainer.backbones import weight_cache

    version = spec.backbone_version()
    if version is None:
        return None

    def convert() -> bytes:
        from trainer.export import convert_to_tflite

        return convert_to_tflite(spec.feature_extractor(), None, spec.input_size, spec.mean, spec.std)

    height, width = spec.input_size
    return weight_cache.cached_bytes(f"{spec.name}-{height}x{width}-features-tflite",
                                     f"{version} and converted by {_versions('tensorflow', 'keras')}",
                                     None if cached_only else convert)


def _versions(*distributions: str) -> str:
    """"tensorflow 2.21.0, keras 3.15.1": what a converted file depends on, read without importing them."""
    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "(not found)"

    return ", ".join(f"{name} {installed(name)}" for name in distributions)


def start(spec: ModelSpec, datasets: Sequence[DataLoader]) -> FeaturesAhead | None:
    """Compute the features of `datasets` in a background thread, if the spec's backbone is cached
    (else None: they are computed when needed)."""
    if runtime.is_tensorflow():
        return None  # no LiteRT: loading the interpreter would import TensorFlow, and noisily, ahead of its time
    model = extractor_tflite(spec, cached_only=True)
    if model is None:
        return None
    interpreter = load_interpreter(model)  # not in the thread: loading, like importing TensorFlow, captures stderr
    pending = [(data, Future()) for data in datasets]
    queue = list(pending)

    def work() -> None:
        while queue:  # popped, so that only the handle keeps a finished set's features (256 MB at 50,000)
            data, future = queue.pop(0)
            try:
                future.set_result(compute(model, interpreter, spec, data))
            except BaseException as error:  # handed to whoever collects the features
                future.set_exception(error)

    # A daemon: an interrupted run exits at once instead of waiting for the photos left.
    threading.Thread(target=work, name="features", daemon=True).start()
    return FeaturesAhead(pending)


def features(spec: ModelSpec, data: DataLoader, ahead: FeaturesAhead | None = None) -> Features | None:
    """The features of every photo of `data`, from `ahead` or computed now; None when the spec's
    backbone has no .tflite (a user's own backbone), so TensorFlow must compute them."""
    collected = ahead.take(data) if ahead is not None else None
    if collected is not None:
        return collected
    model = extractor_tflite(spec)
    return None if model is None else compute(model, load_interpreter(model), spec, data)


def compute(model: bytes, interpreter: Any, spec: ModelSpec, data: DataLoader) -> Features:
    """The features of every photo of `data`: those of earlier runs from the feature cache, the others by
    the `interpreter` of `model`, a float feature extractor."""
    return feature_cache.features_for(model, spec, data, functools.partial(feature_rows, interpreter, spec))


def feature_rows(interpreter: Any, spec: ModelSpec, data: DataLoader,
                 decoders: int | None = None) -> Iterator[np.ndarray]:
    """The `interpreter` over every photo of `data`, preprocessed as the spec says: photos decoded by
    `decoders` threads (default: one a core) a few ahead, while the interpreter runs on its own threads."""
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    for image in tqdm(data.images(spec.input_size, workers=decoders), total=data.size, desc="Extracting features",
                      unit="img", disable=None, leave=False):
        interpreter.set_tensor(source, imaging.normalize(image, spec.mean, spec.std)[None])
        interpreter.invoke()
        yield interpreter.get_tensor(target)[0].copy()

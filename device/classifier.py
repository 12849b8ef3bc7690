"""The classification engine shared by `device classify`, `device bench` and the live daemon.

It reproduces the TFLite Task Library's ImageClassifier on top of a bare interpreter: labels and
normalization from the model's metadata, the trainer's preprocessing (`device.imaging`: whole image,
bilinear resize), quantized inputs and outputs, and the Task Library's top-k / threshold /
allowlist / denylist rules.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from device import imaging
from device.errors import UserError
from device.metadata import ModelInfo, read_model_file, read_model_info
from device.options import check_classifier_options
from device.runtime import load_interpreter

_INPUT_TYPES = (np.uint8, np.int8, np.float32)


class ModelShapeError(UserError):
    """The model is not an image classifier this engine can drive."""


@dataclass(frozen=True)
class Category:
    index: int
    label: str
    score: float


class Classifier:
    """One model, one interpreter for the life of the process; safe to call from several threads."""

    def __init__(self, model_path: str | os.PathLike, labels_file: str | os.PathLike | None = None,
                 threads: int | None = None, top_k: int | None = 3, score_threshold: float = 0.0,
                 allow: Iterable[str] | None = None, deny: Iterable[str] | None = None) -> None:
        check_classifier_options(top_k, score_threshold, threads)
        model = read_model_file(model_path)
        self.model_path = os.fspath(model_path)
        self.model_sha256 = hashlib.sha256(model).hexdigest()
        self.info: ModelInfo = read_model_info(model, labels_file)
        self.labels: tuple[str, ...] = tuple(self.info.labels)
        self.top_k = top_k
        self.score_threshold = float(score_threshold)
        self._kept = _label_filter(self.labels, allow, deny)

        self._interpreter = load_interpreter(model, threads)
        self._lock = threading.Lock()
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelShapeError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs, not one of each")
        input_detail, output_detail = inputs[0], outputs[0]
        self._input_index = input_detail["index"]
        self._output_index = output_detail["index"]
        self._input_dtype = _check_input(input_detail)
        self.input_size: tuple[int, int] = (int(input_detail["shape"][1]), int(input_detail["shape"][2]))
        self._pixel_table = _pixel_table(input_detail, self.info)
        self._dequantize = _dequantizer(output_detail, len(self.labels))

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The model's input tensor for an H×W×3 uint8 RGB image of any size (thread-safe, no interpreter)."""
        pixels = imaging.resize(rgb, self.input_size)
        if self._input_dtype == np.float32:
            tensor = imaging.normalize(pixels, self.info.mean, self.info.std)
        elif self._pixel_table is None:
            tensor = pixels
        else:
            tensor = self._pixel_table[pixels, np.arange(3)]
        return tensor[np.newaxis]

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the interpreter on a prepared input: one float32 score per label, quantized outputs
        dequantized into [0, 1], float outputs as the model gives them (its softmax)."""
        with self._lock:
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output_index)
        return self._dequantize(raw)

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        return self.infer(self.prepare(rgb))

    def top(self, scores: np.ndarray) -> list[Category]:
        """The best categories, highest first: allow/deny and the threshold filter, then top-k cuts."""
        order = np.argsort(-scores, kind="stable")
        kept = [int(i) for i in order if self._kept[i] and scores[i] >= self.score_threshold]
        return [Category(i, self.labels[i], float(scores[i])) for i in kept[:self.top_k]]

    def classify(self, rgb: np.ndarray) -> list[Category]:
        return self.top(self.scores(rgb))


def _label_filter(labels: Sequence[str], allow: Iterable[str] | None, deny: Iterable[str] | None) -> np.ndarray:
    """Which labels may be reported. As in the Task Library: allow and deny exclude each other,
    unknown names are ignored, but a list in which no name is a label is an error."""
    allow, deny = list(allow or ()), list(deny or ())
    if allow and deny:
        raise UserError("--allow and --deny are mutually exclusive")
    named = allow or deny
    if not named:
        return np.ones(len(labels), dtype=bool)
    listed = np.isin(np.asarray(labels, dtype=object), named)
    if not listed.any():
        option = "--allow" if allow else "--deny"
        raise UserError(f"{option}: none of {', '.join(named)} is a label of this model ({', '.join(labels)})")
    return listed if allow else ~listed


def _check_input(detail: dict) -> type:
    shape = tuple(int(n) for n in detail["shape"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ModelShapeError(f"the model's input is {list(shape)}, not an image [1, height, width, 3]")
    if detail["dtype"] not in _INPUT_TYPES:
        raise ModelShapeError(f"the model's input type {np.dtype(detail['dtype']).name} is not uint8, int8 or float32")
    return detail["dtype"]


def _pixel_table(detail: dict, info: ModelInfo) -> np.ndarray | None:
    """For a quantized input: a 256×3 table from pixel value to the quantized normalized value,
    (pixel − mean) / std / scale + zero_point, or None when that is the pixel itself (uint8 fast path)."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return None
    scale, zero_point = detail["quantization"]
    pixel = np.arange(256, dtype=np.float64)[:, np.newaxis]
    steps = (pixel - np.asarray(info.mean, np.float64)) / np.asarray(info.std, np.float64) / scale
    rounded = np.sign(steps) * np.floor(np.abs(steps) + 0.5)  # half away from zero, as TFLite's Quantize
    limits = np.iinfo(dtype)
    table = np.clip(np.broadcast_to(rounded + zero_point, (256, 3)), limits.min, limits.max).astype(dtype)
    if dtype == np.uint8 and np.array_equal(table, np.broadcast_to(pixel.astype(np.uint8), (256, 3))):
        return None
    return np.ascontiguousarray(table)


def _dequantizer(detail: dict, label_count: int):
    shape = tuple(int(n) for n in detail["shape"])
    if int(np.prod(shape)) != label_count:
        raise ModelShapeError(f"the model has {int(np.prod(shape))} outputs but {label_count} labels")
    if detail["dtype"] == np.float32:
        return lambda raw: raw.reshape(-1).astype(np.float32)
    scale, zero_point = detail["quantization"]
    scale, zero_point = np.float32(scale), np.float32(zero_point)
    return lambda raw: np.clip((raw.reshape(-1).astype(np.float32) - zero_point) * scale, 0.0, 1.0)

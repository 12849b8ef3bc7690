"""`QuantizationConfig`: Model Maker's post-training quantization options for the TFLite converter.

Importing this needs no TensorFlow (the command line lists `NAMES` before TensorFlow loads); building a
config does.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence, TextIO

import numpy as np
from tqdm import tqdm

from device import imaging
from trainer.data import DataLoader

# Calibration runs the float model on one core, image by image (60 ms each here). EfficientNet-Lite's
# ReLU6 activations bound most ranges, and 50 photos calibrate as well as 100 or 200 did on flowers-mini
# (docs/benchmarks-trainer.md); Model Maker took 500.
DEFAULT_QUANTIZATION_STEPS = 50


class QuantizationConfig:
    """How to quantize on export; build one with `for_int8`, `for_float16` or `for_dynamic`."""

    def __init__(self, optimizations=None, representative_data: DataLoader | None = None,
                 quantization_steps: int | None = None, inference_input_type=None,
                 inference_output_type=None, supported_ops=None, supported_types=None):
        tf = _tensorflow()
        if optimizations is None:
            optimizations = [tf.lite.Optimize.DEFAULT]
        self.optimizations = list(optimizations) if isinstance(optimizations, (list, tuple)) else [optimizations]
        if representative_data is not None and quantization_steps is None:
            quantization_steps = DEFAULT_QUANTIZATION_STEPS
        self.representative_data = representative_data
        self.quantization_steps = quantization_steps
        self.inference_input_type = tf.as_dtype(inference_input_type) if inference_input_type else None
        self.inference_output_type = tf.as_dtype(inference_output_type) if inference_output_type else None
        if supported_ops is not None and not isinstance(supported_ops, (list, tuple, set)):
            supported_ops = [supported_ops]
        self.supported_ops = supported_ops
        self.supported_types = supported_types

    @classmethod
    def for_dynamic(cls) -> "QuantizationConfig":
        """Weights in int8, activations in float: smaller, no calibration data."""
        return cls()

    @classmethod
    def for_int8(cls, representative_data: DataLoader, quantization_steps: int = DEFAULT_QUANTIZATION_STEPS,
                 inference_input_type="uint8", inference_output_type="uint8",
                 supported_ops=None) -> "QuantizationConfig":
        """Full integer quantization calibrated on `representative_data` (Model Maker's default export);
        `supported_ops` defaults to the int8 built-ins."""
        if supported_ops is None:
            supported_ops = _tensorflow().lite.OpsSet.TFLITE_BUILTINS_INT8
        return cls(representative_data=representative_data, quantization_steps=quantization_steps,
                   inference_input_type=inference_input_type, inference_output_type=inference_output_type,
                   supported_ops=supported_ops)

    @classmethod
    def for_float16(cls) -> "QuantizationConfig":
        """Weights in float16: half the size, float accuracy."""
        return cls(supported_types=[_tensorflow().float16])

    def get_converter_with_quantization(self, converter, input_size: Sequence[int], mean: Sequence[float],
                                        std: Sequence[float], progress: TextIO | None = None):
        """Set these options on a `tf.lite.TFLiteConverter`; calibration images go through
        `device.imaging` and the model's normalization, exactly as the device feeds them. A progress
        bar of the calibration goes to `progress` when it is a terminal."""
        converter.optimizations = self.optimizations
        if self.representative_data is not None:
            converter.representative_dataset = lambda: tqdm(
                self._calibration_samples(input_size, mean, std), desc="Calibrating int8",
                total=min(self.quantization_steps, self.representative_data.size), unit="img",
                file=progress, disable=None, leave=False)
        if self.inference_input_type is not None:
            converter.inference_input_type = self.inference_input_type
        if self.inference_output_type is not None:
            converter.inference_output_type = self.inference_output_type
        if self.supported_ops:
            converter.target_spec.supported_ops = set(self.supported_ops)
        if self.supported_types:
            converter.target_spec.supported_types = list(self.supported_types)
        return converter

    def _calibration_samples(self, input_size: Sequence[int], mean: Sequence[float],
                             std: Sequence[float]) -> Iterator[list[np.ndarray]]:
        """One image per step. The first also holds a black and a white pixel, so the calibrated input
        range is the full 0..255 one and a uint8 input's quantization equals the normalization."""
        images = itertools.islice(self.representative_data.images(input_size), self.quantization_steps)
        for step, pixels in enumerate(images):
            if step == 0:
                pixels = pixels.copy()
                pixels[0, :2] = [[0, 0, 0], [255, 255, 255]]
            yield [imaging.normalize(pixels, mean, std)[None]]


def _tensorflow():
    import trainer._quiet_tensorflow  # noqa: F401  (before TensorFlow)
    import tensorflow

    return tensorflow


# The command line's `--quantization` choices, in one place: name -> the config, given calibration photos.
_BY_NAME = {
    "int8": QuantizationConfig.for_int8,  # full integer, uint8 in and out: Model Maker's default
    "float16": lambda photos: QuantizationConfig.for_float16(),
    "dynamic": lambda photos: QuantizationConfig.for_dynamic(),
    "float32": lambda photos: None,
}
NAMES = tuple(_BY_NAME)


def by_name(name: str, calibration_photos: DataLoader | None) -> QuantizationConfig | None:
    """The config a `--quantization` name stands for; only int8 reads `calibration_photos`."""
    return _BY_NAME[name](calibration_photos)


def needs_calibration(name: str) -> bool:
    return name == "int8"

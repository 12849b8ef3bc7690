"""int8 calibration: which images the converter sees, and how many."""
from __future__ import annotations

import numpy as np

from trainer import DataLoader, QuantizationConfig
from trainer.quantization import DEFAULT_QUANTIZATION_STEPS


def test_calibration_takes_quantization_steps_images_the_first_holding_black_and_white(tiny_flowers):
    data = DataLoader.from_folder(tiny_flowers)
    assert QuantizationConfig.for_int8(data).quantization_steps == DEFAULT_QUANTIZATION_STEPS
    samples = list(QuantizationConfig.for_int8(data, quantization_steps=3)._calibration_samples(
        (32, 32), (127.0,), (128.0,)))
    assert [sample[0].shape for sample in samples] == [(1, 32, 32, 3)] * 3
    # pixels 0 and 255 normalized, so the calibrated input range is the whole uint8 one
    np.testing.assert_allclose(samples[0][0][0, 0, :2], [[-127 / 128] * 3, [1.0] * 3])
    assert len(list(QuantizationConfig.for_int8(data, quantization_steps=1000)._calibration_samples(
        (32, 32), (127.0,), (128.0,)))) == data.size

"""Import this before TensorFlow (`import trainer._quiet_tensorflow`) to keep its start-up log spam off stderr.

TensorFlow prints CUDA and CPU-feature notices from C++ as its libraries load and as it first looks for
devices, before `TF_CPP_MIN_LOG_LEVEL` or absl logging can filter them. So this module sets the usual
variables (a user's own settings win), then imports TensorFlow and lists its devices with the stderr file
descriptor captured, and replays every captured line that is not one of those known notices.
"""
from __future__ import annotations

import logging
import os
import sys

from device import native_stderr

_NOISE = (
    "absl::InitializeLog()",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "cuda_dnn.cc",
    "cuda_fft.cc",
    "cuda_blas.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "oneDNN custom operations are on",
)


def _import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr.filtered(lambda line: any(noise in line for noise in _NOISE)):
        import tensorflow as tf

        tf.config.list_physical_devices()
    tf.get_logger().setLevel(logging.ERROR)


if "tensorflow" not in sys.modules:
    _import_tensorflow_quietly()

"""bloomkit's trainer: the TFLite Model Maker image-classifier API, on Keras 3.

`from trainer import DataLoader, image_classifier, model_spec, QuantizationConfig, ExportFormat`
works as Model Maker's imports did. Names load lazily so that TensorFlow-free sub-commands
(`trainer metadata`) start without it.
"""
from __future__ import annotations

import importlib

# public name -> module that defines it
_LAZY = {
    "DataLoader": "trainer.data",
    "image_classifier": "trainer.image_classifier",
    "model_spec": "trainer.model_spec",
    "QuantizationConfig": "trainer.quantization",
    "ExportFormat": "trainer.export",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if name == module.__name__.rpartition(".")[2] else getattr(module, name)

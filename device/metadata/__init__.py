"""TFLite Metadata for image classifiers, read and written with nothing but `flatbuffers`.

No tflite-support and no TensorFlow, so the device can read labels and normalization from a
model, and `trainer metadata` can label a bare model from any tool. docs/metadata.md describes
the format as we implement it.
"""
from device.metadata.errors import (LabelsMismatchError, MalformedMetadataError, MetadataError, NoMetadataError,
                                    NotTFLiteError, TruncatedModelError, UnsupportedModelError)
from device.metadata.reader import ModelInfo, TensorInfo, read_model_file, read_model_info
from device.metadata.writer import write_metadata

__all__ = [
    "read_model_info", "read_model_file", "write_metadata", "ModelInfo", "TensorInfo", "MetadataError", "NotTFLiteError",
    "TruncatedModelError", "NoMetadataError", "LabelsMismatchError", "MalformedMetadataError",
    "UnsupportedModelError",
]

"""The slots and enums of schema.fbs (the TFLite model) and metadata_schema.fbs that we use.

A slot is a field's position in its table's declaration, counting from 0; a union takes two
slots (its type, then its value). Names follow the .fbs files.
"""
import enum

MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
METADATA_NAME = "TFLITE_METADATA"   # the Model.metadata entry that points to the metadata buffer


class Model(enum.IntEnum):
    version = 0
    operator_codes = 1
    subgraphs = 2
    description = 3
    buffers = 4
    metadata_buffer = 5
    metadata = 6
    signature_defs = 7


class SubGraph(enum.IntEnum):
    tensors = 0
    inputs = 1
    outputs = 2


class Tensor(enum.IntEnum):
    shape = 0
    type = 1
    name = 3
    quantization = 4


class Quantization(enum.IntEnum):
    scale = 2
    zero_point = 3


class Buffer(enum.IntEnum):
    data = 0
    offset = 1   # set when the data lies after the FlatBuffer (models over 2 GB)


class Metadata(enum.IntEnum):
    name = 0
    buffer = 1


# TensorType: the numpy name of each type an interpreter reports
TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
}


class ModelMetadata(enum.IntEnum):
    name = 0
    description = 1
    version = 2
    subgraph_metadata = 3
    author = 4
    license = 5
    associated_files = 6
    min_parser_version = 7


class SubGraphMetadata(enum.IntEnum):
    input_tensor_metadata = 2
    output_tensor_metadata = 3
    associated_files = 4


class TensorMetadata(enum.IntEnum):
    name = 0
    description = 1
    content = 3
    process_units = 4
    stats = 5
    associated_files = 6


class Content(enum.IntEnum):
    content_properties_type = 0
    content_properties = 1


class ContentProperties(enum.IntEnum):
    FeatureProperties = 1
    ImageProperties = 2


class ImageProperties(enum.IntEnum):
    color_space = 0


RGB = 1   # ColorSpaceType.RGB


class ProcessUnit(enum.IntEnum):
    options_type = 0
    options = 1


NORMALIZATION_OPTIONS = 1   # ProcessUnitOptions.NormalizationOptions


class NormalizationOptions(enum.IntEnum):
    mean = 0
    std = 1


class Stats(enum.IntEnum):
    max = 0
    min = 1


class AssociatedFile(enum.IntEnum):
    name = 0
    description = 1
    type = 2


TENSOR_AXIS_LABELS = 2   # AssociatedFileType.TENSOR_AXIS_LABELS

"""Tiny real TFLite models, built with the runtime's own schema (no TensorFlow): MEAN over height
and width, so a model's three scores are its input's per-channel means. A wrong channel order,
normalization or quantization shows up directly in the scores."""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_TYPES = {"float32": schema.TensorType.FLOAT32, "uint8": schema.TensorType.UINT8,
          "int8": schema.TensorType.INT8, "int32": schema.TensorType.INT32}


def channel_mean_model(dtype: str = "float32", size: tuple[int, int] = (8, 8), input_quantization=None,
                       output_quantization=None, input_shape=None) -> bytes:
    """A model [1, H, W, 3] `dtype` -> [1, 3] `dtype`; quantizations are (scale, zero_point)."""
    shape = input_shape or [1, *size, 3]
    tensors = [
        _tensor("image", shape, dtype, 1, input_quantization),
        _tensor("axes", [2], "int32", 2),
        _tensor("means", [1, 3], dtype, 3, output_quantization),
    ]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.MEAN
    code.version = 1 if dtype == "float32" else 2
    options = schema.ReducerOptionsT()
    options.keepDims = False
    mean = schema.OperatorT()
    mean.opcodeIndex, mean.inputs, mean.outputs = 0, [0, 1], [2]
    mean.builtinOptionsType, mean.builtinOptions = schema.BuiltinOptions.ReducerOptions, options
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [2], [mean]
    buffers = [schema.BufferT() for _ in range(4)]
    buffers[2].data = np.frombuffer(np.array([1, 2], dtype="<i4").tobytes(), dtype=np.uint8)
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    model.description = "bloomkit test: per-channel mean"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _tensor(name: str, shape: list[int], dtype: str, buffer: int, quantization=None) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, _TYPES[dtype], buffer
    if quantization is not None:
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale = [float(quantization[0])]
        tensor.quantization.zeroPoint = [int(quantization[1])]
    return tensor

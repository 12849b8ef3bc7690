"""Read what a classifier .tflite says about itself: labels, normalization, names, tensors.

Works on any model whose TFLite Metadata follows the image-classifier layout (ours, Model
Maker's, MediaPipe Model Maker's) and, given a labels file, on bare models. Every byte is treated
as hostile: only `MetadataError`s come out.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from typing import BinaryIO, Iterator

from device.metadata import archive, flatbuf, labels as labels_txt
from device.metadata import schema as s
from device.metadata.errors import (LabelsMismatchError, MalformedMetadataError, MetadataError, NoMetadataError,
                                    NotTFLiteError, TruncatedModelError, UnsupportedModelError)

DEFAULT_FLOAT_NORMALIZATION = (127.5, 127.5)   # (mean, std): pixels to [-1, 1], the common float convention
MAX_MODEL_BYTES = 2**31 - 1    # a FlatBuffer's offsets are signed 32-bit: no TFLite model is larger
MAX_LABELS_BYTES = 2**24       # 16 MiB, room for a million labels
NO_IDENTIFIER = "not a TFLite model (no TFL3 identifier)"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor as the interpreter will see it."""
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything the device needs to know about a classifier: how to feed it and what it answers."""
    name: str | None
    description: str | None
    version: str | None
    author: str | None
    license: str | None
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input: TensorInfo
    output: TensorInfo
    has_metadata: bool
    min_parser_version: str | None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the input image (NHWC)."""
        return self.input.shape[1], self.input.shape[2]


@dataclasses.dataclass(frozen=True)
class _Metadata:
    """The fields of a ModelMetadata buffer that a classifier uses."""
    name: str | None
    description: str | None
    version: str | None
    author: str | None
    license: str | None
    min_parser_version: str | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    labels_file: str | None


_NO_METADATA = _Metadata(*[None] * len(dataclasses.fields(_Metadata)))


def read_model_info(model: str | os.PathLike | bytes, labels_file: str | os.PathLike | None = None) -> ModelInfo:
    """Read a classifier's metadata and tensors; `labels_file`, when given, overrides embedded labels.

    Errors about a model given as a path name the file.
    """
    if isinstance(model, bytes):
        return _read_model_info(model, labels_file)
    data = read_model_file(model)
    try:
        return _read_model_info(data, labels_file)
    except MetadataError as error:
        raise type(error)(f"{os.fspath(model)}: {error}") from None


def read_model_file(path: str | os.PathLike) -> bytes:
    """A model file's bytes, refused before they are read when they cannot be a TFLite model.

    A device or a pipe (/dev/zero never ends), a file larger than a FlatBuffer can be, or one without
    the TFL3 identifier in its header is refused after reading at most 8 bytes, so a wrong path never
    costs the memory of a whole file. Errors name the file.
    """
    try:
        with _regular_file(path, "model") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_MODEL_BYTES:
                raise NotTFLiteError(f"not a TFLite model ({size / 2**30:.1f} GiB; a FlatBuffer is under 2 GiB)")
            if file.read(8)[4:8] != s.MODEL_IDENTIFIER:
                raise NotTFLiteError(NO_IDENTIFIER)
            file.seek(0)
            return file.read()
    except MetadataError as error:
        raise type(error)(f"{os.fspath(path)}: {error}") from None


def _read_model_info(data: bytes, labels_file: str | os.PathLike | None) -> ModelInfo:
    input, output = read_tensors(data)
    if len(input.shape) != 4:
        raise UnsupportedModelError(f"not an image classifier: input shape {list(input.shape)} is not NHWC")
    metadata = _read_metadata(data)
    labels = _labels(data, metadata, labels_file)
    if len(labels) != output_size(output):
        raise LabelsMismatchError(f"{len(labels)} labels, but the model outputs {output_size(output)} scores")
    found = metadata or _NO_METADATA
    mean, std = (found.mean, found.std) if found.mean else default_normalization(input)
    return ModelInfo(name=found.name, description=found.description, version=found.version, author=found.author,
                     license=found.license, labels=labels, mean=mean, std=std, input=input, output=output,
                     has_metadata=metadata is not None, min_parser_version=found.min_parser_version)


def default_normalization(input: TensorInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) to assume without metadata: the input's quantization or 127.5/127.5.

    A quantized input then receives the raw pixel: a uint8 one as it is, an int8 one shifted by −128
    (the same pixel, stored signed), so nothing above 127 is clipped.
    """
    if input.quantized:
        signed_offset = 128.0 if input.dtype == "int8" else 0.0
        return (float(input.zero_point) + signed_offset,), (1.0 / input.scale,)
    mean, std = DEFAULT_FLOAT_NORMALIZATION
    return (mean,), (std,)


def output_size(output: TensorInfo) -> int:
    """The number of scores: the output's last dimension."""
    return output.shape[-1] if output.shape else 1


def read_tensors(data: bytes) -> tuple[TensorInfo, TensorInfo]:
    """(input, output) of subgraph 0, checking on the way that the file is a whole TFLite model."""
    with model_errors():
        model = model_root(data)
        subgraphs = model.table_positions(s.Model.subgraphs)
        if not subgraphs:
            raise flatbuf.FormatError("it has no subgraphs")
        subgraph = flatbuf.Table(data, subgraphs[0])
        tensors = subgraph.table_positions(s.SubGraph.tensors)
        inputs, outputs = subgraph.scalars(s.SubGraph.inputs, "i"), subgraph.scalars(s.SubGraph.outputs, "i")
        if not inputs or not outputs:
            raise flatbuf.FormatError("subgraph 0 has no input or no output")
        for index in (inputs[0], outputs[0]):
            if not 0 <= index < len(tensors):
                raise flatbuf.FormatError(f"tensor {index} does not exist")
        _check_buffers(model)
        return _tensor(flatbuf.Table(data, tensors[inputs[0]])), _tensor(flatbuf.Table(data, tensors[outputs[0]]))


def model_root(data: bytes) -> flatbuf.Table:
    """The root `Model` table, once the file identifier says this is TFLite."""
    if data[4:8] != s.MODEL_IDENTIFIER:
        raise NotTFLiteError(NO_IDENTIFIER)
    return flatbuf.root(data)


def metadata_buffer_index(model: flatbuf.Table) -> int | None:
    """Index in `Model.buffers` of the TFLITE_METADATA buffer, or None."""
    for entry in model.tables(s.Model.metadata):
        if entry.string(s.Metadata.name) == s.METADATA_NAME:
            return entry.scalar(s.Metadata.buffer, "I", 0)
    return None


def _tensor(tensor: flatbuf.Table) -> TensorInfo:
    type_code = tensor.scalar(s.Tensor.type, "b", 0)
    quantization = tensor.table(s.Tensor.quantization)
    scales = quantization.scalars(s.Quantization.scale, "f") if quantization else ()
    zero_points = quantization.scalars(s.Quantization.zero_point, "q") if quantization else ()
    return TensorInfo(name=tensor.string(s.Tensor.name) or "", shape=tensor.scalars(s.Tensor.shape, "i"),
                      dtype=s.TENSOR_TYPES.get(type_code, f"type {type_code}"),
                      scale=float(scales[0]) if scales else 0.0, zero_point=int(zero_points[0]) if zero_points else 0)


def _check_buffers(model: flatbuf.Table) -> None:
    """Every weight buffer lies inside the file: this is where a truncated model shows."""
    for position in model.table_positions(s.Model.buffers):
        flatbuf.Table(model.buf, position).vector(s.Buffer.data, 1)


def _read_metadata(data: bytes) -> _Metadata | None:
    with model_errors():
        model = model_root(data)
        index = metadata_buffer_index(model)
        buffers = model.table_positions(s.Model.buffers)
        if index is None:
            return None
        if index >= len(buffers):
            raise MalformedMetadataError(f"the metadata points to buffer {index} of {len(buffers)}")
        buffer = flatbuf.Table(data, buffers[index]).bytes(s.Buffer.data)
    try:
        return _parse_metadata(buffer)
    except flatbuf.FormatError as error:
        raise MalformedMetadataError(f"malformed metadata: {error}") from None


def _parse_metadata(buffer: bytes) -> _Metadata:
    if buffer[4:8] != s.METADATA_IDENTIFIER:
        raise flatbuf.FormatError("no M001 identifier")
    metadata = flatbuf.root(buffer)
    mean = std = labels_file = None
    subgraphs = metadata.tables(s.ModelMetadata.subgraph_metadata)
    if subgraphs:
        inputs = subgraphs[0].tables(s.SubGraphMetadata.input_tensor_metadata)
        outputs = subgraphs[0].tables(s.SubGraphMetadata.output_tensor_metadata)
        if inputs:
            mean, std = _normalization(inputs[0])
        if outputs:
            labels_file = _axis_labels_file(outputs[0])
    return _Metadata(
        name=metadata.string(s.ModelMetadata.name), description=metadata.string(s.ModelMetadata.description),
        version=metadata.string(s.ModelMetadata.version), author=metadata.string(s.ModelMetadata.author),
        license=metadata.string(s.ModelMetadata.license),
        min_parser_version=metadata.string(s.ModelMetadata.min_parser_version),
        mean=mean, std=std, labels_file=labels_file)


def _normalization(tensor: flatbuf.Table) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    for unit in tensor.tables(s.TensorMetadata.process_units):
        if unit.scalar(s.ProcessUnit.options_type, "B", 0) == s.NORMALIZATION_OPTIONS:
            options = unit.table(s.ProcessUnit.options)
            mean = options.scalars(s.NormalizationOptions.mean, "f") if options else ()
            std = options.scalars(s.NormalizationOptions.std, "f") if options else ()
            if not mean or len(mean) != len(std) or not all(std):
                raise flatbuf.FormatError(f"normalization mean {mean} and std {std} do not pair up")
            return mean, std
    return None, None


def _axis_labels_file(tensor: flatbuf.Table) -> str | None:
    for file in tensor.tables(s.TensorMetadata.associated_files):
        if file.scalar(s.AssociatedFile.type, "b", 0) == s.TENSOR_AXIS_LABELS:
            return file.string(s.AssociatedFile.name)
    return None


def _labels(data: bytes, metadata: _Metadata | None, labels_file: str | os.PathLike | None) -> tuple[str, ...]:
    if labels_file is not None:
        text, source = _read_labels_file(labels_file), os.fspath(labels_file)
    elif metadata is None:
        raise NoMetadataError("model has no metadata; name its labels file (--labels labels.txt)")
    elif metadata.labels_file is None:
        raise NoMetadataError("model's metadata has no labels file; name one (--labels labels.txt)")
    else:
        text, source = archive.read_file(data, metadata.labels_file), metadata.labels_file
    try:
        labels = labels_txt.parse(text)
    except UnicodeDecodeError:
        raise MalformedMetadataError(f"{source} is not UTF-8 text") from None
    if not labels:
        raise LabelsMismatchError(f"{source} has no labels")
    return labels


def _read_labels_file(path: str | os.PathLike) -> bytes:
    what = f"labels file {os.fspath(path)}"
    with _regular_file(path, what) as file:
        data = file.read(MAX_LABELS_BYTES + 1)
    if len(data) > MAX_LABELS_BYTES:
        raise MetadataError(f"{what} is larger than {MAX_LABELS_BYTES // 2**20} MiB: not a labels file")
    return data


@contextlib.contextmanager
def _regular_file(path: str | os.PathLike, what: str) -> Iterator[BinaryIO]:
    """`path` opened for reading if it is a regular file (opening a FIFO does not wait for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise MetadataError(f"cannot read {what}: {error.strerror or error}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise MetadataError(f"cannot read {what}: it is {kind}, not a file")
    with os.fdopen(fd, "rb") as file:
        try:
            yield file
        except OSError as error:
            raise MetadataError(f"cannot read {what}: {error.strerror or error}") from None


@contextlib.contextmanager
def model_errors():
    """Turn a FlatBuffer failure inside the model into the one-line error that names its kind."""
    try:
        yield
    except flatbuf.OutOfBoundsError as error:
        raise TruncatedModelError(f"model is truncated or corrupt: {error}") from None
    except flatbuf.FormatError as error:
        raise NotTFLiteError(f"not a valid TFLite model: {error}") from None

"""Write image-classifier TFLite Metadata into a model, the way tflite-support's MetadataPopulator does.

The result keeps the model byte for byte (interpreters run it unchanged) and adds: a
`TFLITE_METADATA` entry in `Model.metadata` pointing to a new buffer that holds the ModelMetadata
FlatBuffer (file identifier M001), and `labels.txt` in a zip archive appended to the file.

Without generated code the Model table cannot be re-packed, but it need not be: FlatBuffers
offsets only point forward, so a new root `Model` table (with new `buffers` and `metadata`
vectors) written at the front of the file can point into the original model placed after it,
shifted by a multiple of 16 so its 16-byte-aligned buffers stay aligned.
"""
from __future__ import annotations

import math
import struct
from typing import Sequence

import flatbuffers

from device.metadata import archive, flatbuf, labels as labels_txt
from device.metadata import schema as s
from device.metadata.errors import LabelsMismatchError, MalformedMetadataError, MetadataError, UnsupportedModelError
from device.metadata.reader import (TensorInfo, metadata_buffer_index, model_errors, model_root, output_size,
                                    read_tensors)

LABELS_FILE = "labels.txt"
DEFAULT_LICENSE = "Apache License. Version 2.0 http://www.apache.org/licenses/LICENSE-2.0."
# The metadata parser version that introduced each feature we write (metadata_schema.fbs's history,
# as tflite-support's metadata_version.cc tracks it); readers older than the highest must refuse.
_FEATURE_VERSIONS = {
    "ImageProperties": (1, 0, 0), "FeatureProperties": (1, 0, 0), "NormalizationOptions": (1, 0, 0),
    "Stats": (1, 0, 0), "AssociatedFile": (1, 0, 0), "AssociatedFileType.TENSOR_AXIS_LABELS": (1, 0, 0),
}
_PIXEL_RANGE = (0.0, 255.0)
_QUANTIZED_RANGES = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0)}


def write_metadata(model: bytes, labels: Sequence[str], *, mean: Sequence[float], std: Sequence[float],
                   name: str, version: str = "v1", description: str | None = None,
                   author: str = "bloomkit", license: str = DEFAULT_LICENSE) -> bytes:
    """`model` with image-classifier metadata and `labels` packed in, replacing any it had."""
    body = _original(archive.without_archive(model))
    input, output = read_tensors(body)
    labels = tuple(labels)
    labels_file = labels_txt.to_bytes(labels)
    if len(labels) != output_size(output):
        raise LabelsMismatchError(f"{len(labels)} labels, but the model outputs {output_size(output)} scores")
    mean, std = _checked_normalization(mean, std)
    description = description or f"Identify the most prominent object in the image from a set of {len(labels)} categories."
    metadata = _metadata_flatbuffer(input, len(labels), mean, std, name=name, version=version,
                                    description=description, author=author, license=license)
    return archive.append(_with_metadata_buffer(body, metadata), {LABELS_FILE: labels_file})


def min_parser_version(features: Sequence[str]) -> str:
    """The lowest metadata parser version that understands every one of `features`."""
    return ".".join(map(str, max(_FEATURE_VERSIONS[feature] for feature in features)))


def _checked_normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(map(float, mean)), tuple(map(float, std))
    if len(mean) not in (1, 3) or len(std) != len(mean):
        raise MetadataError("mean and std need 1 value each, or 3 (one a channel)")
    if not all(map(math.isfinite, mean + std)) or 0.0 in std:
        raise MetadataError("mean and std must be finite, and std non-zero")
    return mean, std


def _input_range(input: TensorInfo, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[list[float], list[float]]:
    """(min, max) of the input values: the raw bytes when quantized, else normalized pixels 0..255."""
    if input.dtype in _QUANTIZED_RANGES:
        low, high = _QUANTIZED_RANGES[input.dtype]
        return [low], [high]
    return ([(_PIXEL_RANGE[0] - m) / d for m, d in zip(mean, std)],
            [(_PIXEL_RANGE[1] - m) / d for m, d in zip(mean, std)])


def _input_description(input: TensorInfo, low: list[float], high: list[float]) -> str:
    if len(input.shape) != 4 or input.shape[3] != 3:
        raise UnsupportedModelError(f"not an RGB image classifier: input shape {list(input.shape)}")
    kind = "a single byte" if input.dtype in _QUANTIZED_RANGES else "a float"
    values = f"between {min(low):g} and {max(high):g}"
    return (f"Input image to be classified. The expected image is {input.shape[2]} x {input.shape[1]}, with "
            f"three channels (red, blue, and green) per pixel. Each value in the tensor is {kind} {values}.")


def _metadata_flatbuffer(input: TensorInfo, label_count: int, mean: tuple[float, ...], std: tuple[float, ...],
                         *, name: str, version: str, description: str, author: str, license: str) -> bytes:
    """The ModelMetadata FlatBuffer (M001) of an image classifier, built bottom-up."""
    low, high = _input_range(input, mean, std)
    input_description = _input_description(input, low, high)
    builder = flatbuffers.Builder(1024)
    text = builder.CreateString

    def floats(values: Sequence[float]) -> int:
        builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            builder.PrependFloat32(value)
        return builder.EndVector()

    def tables(offsets: Sequence[int]) -> int:
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    def table(offsets: dict[int, int] = {}, bytes_: dict[int, int] = {}) -> int:
        builder.StartObject(max([*offsets, *bytes_], default=-1) + 1)
        for slot, offset in offsets.items():
            builder.PrependUOffsetTRelativeSlot(slot, offset, 0)
        for slot, value in bytes_.items():
            builder.PrependUint8Slot(slot, value, 0)
        return builder.EndObject()

    def stats(low: Sequence[float], high: Sequence[float]) -> int:
        return table({s.Stats.max: floats(high), s.Stats.min: floats(low)})

    def content(kind: int, properties: int | None = None) -> int:
        """Content of `kind`; FeatureProperties has no fields, so Model Maker writes none, like us."""
        offsets = {} if properties is None else {s.Content.content_properties: properties}
        return table(offsets, {s.Content.content_properties_type: kind})

    image = table({
        s.TensorMetadata.name: text("image"),
        s.TensorMetadata.description: text(input_description),
        s.TensorMetadata.content: content(s.ContentProperties.ImageProperties,
                                          table(bytes_={s.ImageProperties.color_space: s.RGB})),
        s.TensorMetadata.process_units: tables([table(
            {s.ProcessUnit.options: table({s.NormalizationOptions.mean: floats(mean),
                                           s.NormalizationOptions.std: floats(std)})},
            {s.ProcessUnit.options_type: s.NORMALIZATION_OPTIONS})]),
        s.TensorMetadata.stats: stats(low, high),
    })
    labels_file = table({s.AssociatedFile.name: text(LABELS_FILE),
                         s.AssociatedFile.description: text("Labels for objects that the model can recognize.")},
                        {s.AssociatedFile.type: s.TENSOR_AXIS_LABELS})
    probability = table({
        s.TensorMetadata.name: text("probability"),
        s.TensorMetadata.description: text(f"Probabilities of the {label_count} labels respectively."),
        s.TensorMetadata.content: content(s.ContentProperties.FeatureProperties),
        s.TensorMetadata.stats: stats([0.0], [1.0]),
        s.TensorMetadata.associated_files: tables([labels_file]),
    })
    subgraph = table({s.SubGraphMetadata.input_tensor_metadata: tables([image]),
                      s.SubGraphMetadata.output_tensor_metadata: tables([probability])})
    features = ["ImageProperties", "FeatureProperties", "NormalizationOptions", "Stats", "AssociatedFile",
                "AssociatedFileType.TENSOR_AXIS_LABELS"]
    root = table({
        s.ModelMetadata.name: text(name), s.ModelMetadata.description: text(description),
        s.ModelMetadata.version: text(version), s.ModelMetadata.subgraph_metadata: tables([subgraph]),
        s.ModelMetadata.author: text(author), s.ModelMetadata.license: text(license),
        s.ModelMetadata.min_parser_version: text(min_parser_version(features)),
    })
    builder.Finish(root, file_identifier=s.METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _with_metadata_buffer(body: bytes, metadata: bytes) -> bytes:
    """`body` (a TFLite model) whose TFLITE_METADATA buffer is `metadata`: a new root in front of it."""
    with model_errors():
        model = model_root(body)
        _check_rewritable(model)
        buffers = [("body", position) for position in model.table_positions(s.Model.buffers)]
        entries = [("body", position) for position in model.table_positions(s.Model.metadata)]
        index = metadata_buffer_index(model)
        fields = {slot: ("body", _inside(body, model.target(slot))) for slot in s.Model
                  if slot != s.Model.version and model.field(slot) is not None}
        if model.field(s.Model.version) is not None:
            fields[s.Model.version] = model.scalar(s.Model.version, "I", 0)
    new_entry = index is None
    if new_entry:
        index = len(buffers)
        buffers.append("metadata buffer")
        entries.append("metadata entry")
    elif index < len(buffers):
        buffers[index] = "metadata buffer"
    else:
        raise MalformedMetadataError(f"the metadata points to buffer {index} of {len(buffers)}")
    fields[s.Model.buffers], fields[s.Model.metadata] = "buffers", "metadata"

    prefix = _ForwardLayout()
    prefix.link("model")
    prefix.out += s.MODEL_IDENTIFIER
    prefix.table("model", sorted(fields.items()))
    prefix.vector("buffers", buffers)
    prefix.vector("metadata", entries)
    prefix.table("metadata buffer", [(s.Buffer.data, "metadata bytes")])
    if new_entry:
        prefix.table("metadata entry", [(s.Metadata.name, "metadata name"), (s.Metadata.buffer, index)])
        prefix.byte_vector("metadata name", s.METADATA_NAME.encode(), alignment=4, terminator=b"\0")
    prefix.byte_vector("metadata bytes", metadata, alignment=16)
    return prefix.finish(body)


def _original(body: bytes) -> bytes:
    """The model we once wrote `body` from, if we did: rewriting it keeps old metadata from piling up.

    Ours is a new root followed by the original, which starts (16-aligned) right after our
    metadata buffer and holds the very subgraphs our root points to.
    """
    with model_errors():
        model = model_root(body)
        index = metadata_buffer_index(model)
        buffers = model.table_positions(s.Model.buffers)
        if index is None or index >= len(buffers):
            return body
        start, length = flatbuf.Table(body, buffers[index]).vector(s.Buffer.data, 1)
        inner = -(-(start + length) // 16) * 16
        subgraphs = model.target(s.Model.subgraphs)
    if body[inner + 4:inner + 8] != s.MODEL_IDENTIFIER:
        return body
    try:
        inner_subgraphs = model_root(body[inner:]).target(s.Model.subgraphs)
    except flatbuf.FormatError:
        return body
    ours = inner_subgraphs is not None and subgraphs == inner + inner_subgraphs
    return body[inner:] if ours else body


def _inside(body: bytes, position: int) -> int:
    """`position`, checked to lie in `body`: the new root will point there."""
    if not 0 <= position < len(body):
        raise flatbuf.OutOfBoundsError(f"a Model field points to byte {position}, past the end ({len(body)} bytes)")
    return position


def _check_rewritable(model: flatbuf.Table) -> None:
    if any(model.field(slot) is not None for slot in range(len(s.Model), model.slots)):
        raise UnsupportedModelError("the model uses Model fields newer than this writer knows")
    for position in model.table_positions(s.Model.buffers):
        if flatbuf.Table(model.buf, position).scalar(s.Buffer.offset, "Q", 0) > 1:
            raise UnsupportedModelError("the model keeps its weights outside the FlatBuffer (over 2 GB)")


class _ForwardLayout:
    """FlatBuffer objects laid out front to back, so every offset points forward: to an object
    written later here (by name) or into the original model appended at the end (("body", position))."""

    def __init__(self):
        self.out = bytearray()
        self.places: dict[str, int] = {}
        self.links: list[tuple[int, object]] = []

    def pad(self, alignment: int, ahead: int = 0) -> None:
        """Zeros so that `ahead` bytes from now the position is a multiple of `alignment`."""
        self.out += bytes(-(len(self.out) + ahead) % alignment)

    def link(self, target: object) -> None:
        self.links.append((len(self.out), target))
        self.out += bytes(4)

    def table(self, name: str, fields: list[tuple[int, object]]) -> None:
        """A table of 4-byte fields: an int is a uint32 value, anything else a link."""
        slots = max(slot for slot, _ in fields) + 1
        where = {slot: 4 + 4 * i for i, (slot, _) in enumerate(fields)}
        self.pad(4, ahead=4 + 2 * slots)
        vtable = len(self.out)
        self.out += struct.pack(f"<HH{slots}H", 4 + 2 * slots, 4 + 4 * len(fields),
                                *(where.get(slot, 0) for slot in range(slots)))
        self.places[name] = len(self.out)
        self.out += struct.pack("<i", len(self.out) - vtable)
        for _, value in fields:
            if isinstance(value, int):
                self.out += struct.pack("<I", value)
            else:
                self.link(value)

    def vector(self, name: str, targets: list[object]) -> None:
        self.places[name] = len(self.out)
        self.out += struct.pack("<I", len(targets))
        for target in targets:
            self.link(target)

    def byte_vector(self, name: str, data: bytes, alignment: int, terminator: bytes = b"") -> None:
        """A [ubyte] vector (a string, with its NUL terminator) whose first byte is `alignment`-aligned."""
        self.pad(alignment, ahead=4)
        self.places[name] = len(self.out)
        self.out += struct.pack("<I", len(data)) + data + terminator
        self.pad(4)

    def finish(self, body: bytes) -> bytes:
        self.pad(16)
        shift = len(self.out)
        for at, target in self.links:
            position = shift + target[1] if isinstance(target, tuple) else self.places[target]
            struct.pack_into("<I", self.out, at, position - at)
        return bytes(self.out) + body


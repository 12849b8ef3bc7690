"""Our writer: what it writes is what Model Maker wrote, and the model still runs the same."""
from __future__ import annotations

import json

import flatbuffers
import numpy as np
import pytest

from device.metadata import (LabelsMismatchError, MetadataError, NotTFLiteError, UnsupportedModelError,
                             read_model_info, write_metadata)
from device.metadata.reader import metadata_buffer_index, model_root
from device.metadata import schema
from tests.metadata.conftest import FLOWERS

MODEL_MAKER = dict(name="efficientnet_lite0", author="TensorFlow Lite Model Maker")


def test_tflite_support_displays_what_model_maker_wrote(bare_model, model_maker_model, tflite_support, tmp_path):
    written = tmp_path / "ours.tflite"
    written.write_bytes(write_metadata(bare_model.read_bytes(), FLOWERS, mean=[0], std=[255], **MODEL_MAKER))
    shown = tflite_support("display", written)
    assert shown["metadata"] == json.loads(model_maker_model.with_suffix(".metadata.json").read_text())
    assert shown["files"] == {"labels.txt": "\n".join(FLOWERS)}
    assert shown["computed_min_parser_version"] == read_model_info(written).min_parser_version == "1.0.0"


def test_the_model_runs_exactly_as_before(bare_model):
    from ai_edge_litert.interpreter import Interpreter

    written = write_metadata(bare_model.read_bytes(), FLOWERS, mean=[0], std=[255], name="flowers")
    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    outputs = []
    for model in (bare_model.read_bytes(), written):
        interpreter = Interpreter(model_content=model)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(*outputs)


def test_rewriting_replaces_the_metadata_and_keeps_other_entries(reference_model):
    original = reference_model.read_bytes()
    once = write_metadata(original, list("abcde"), mean=[127.5], std=[127.5], name="first", version="v2")
    twice = write_metadata(once, FLOWERS, mean=[1, 2, 3], std=[4, 5, 6], name="second", description="Flowers.")
    assert len(twice) - len(once) < 100   # the old metadata and archive went: nothing piles up
    def entries(data: bytes) -> tuple[list[str], int, int]:
        """The model's metadata entries' names, the TFLite Metadata's buffer index, the number of buffers."""
        model = model_root(data)
        names = [entry.string(schema.Metadata.name) for entry in model.tables(schema.Model.metadata)]
        return names, metadata_buffer_index(model), len(model.table_positions(schema.Model.buffers))

    names, _, _ = entries(original)
    assert "TFLITE_METADATA" in names and "min_runtime_version" in names
    assert entries(once) == entries(twice) == entries(original)
    info = read_model_info(twice)
    assert (info.name, info.version, info.description, info.author) == ("second", "v1", "Flowers.", "bloomkit")
    assert (info.labels, info.mean, info.std) == (FLOWERS, (1, 2, 3), (4, 5, 6))
    assert read_model_info(once).labels == tuple("abcde")


def test_refuses_what_it_cannot_write(bare_model):
    model = bare_model.read_bytes()
    with pytest.raises(LabelsMismatchError):
        write_metadata(model, FLOWERS[:4], mean=[0], std=[255], name="x")
    with pytest.raises(MetadataError, match="empty or spans lines"):
        write_metadata(model, ["a", "b\nc", "d", "e", "f"], mean=[0], std=[255], name="x")
    with pytest.raises(MetadataError, match="std"):
        write_metadata(model, FLOWERS, mean=[0], std=[0], name="x")
    with pytest.raises(MetadataError, match="3"):
        write_metadata(model, FLOWERS, mean=[0, 0], std=[1, 1], name="x")
    with pytest.raises(NotTFLiteError):
        write_metadata(b"PNG" + bytes(64), FLOWERS, mean=[0], std=[255], name="x")


@pytest.mark.slow   # converting the model with TensorFlow takes ~25 s on 2 cores
def test_float_model_gets_the_normalized_pixel_range(float_model, tflite_support, tmp_path):
    written = tmp_path / "float.tflite"
    written.write_bytes(write_metadata(float_model.read_bytes(), FLOWERS, name="tiny",
                                       mean=[127.5, 127.5, 0], std=[127.5, 127.5, 255]))
    image, = tflite_support("display", written)["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"]
    assert image["stats"] == {"min": [-1.0, -1.0, 0.0], "max": [1.0, 1.0, 1.0]}
    assert image["description"].startswith("Input image to be classified. The expected image is 48 x 32,")
    assert image["description"].endswith("Each value in the tensor is a float between -1 and 1.")
    info = read_model_info(written)
    assert (info.input.dtype, info.input.scale, info.input_size) == ("float32", 0.0, (32, 48))
    assert (info.mean, info.std) == ((127.5, 127.5, 0.0), (127.5, 127.5, 255.0))


def synthetic_model(buffer_offset: int = 0, model_fields: int = 8) -> bytes:
    """A minimal Model FlatBuffer (1x2x2x3 uint8 in, 1x5 out, no operators) built field by field."""
    builder = flatbuffers.Builder(256)

    def ints(values):
        builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            builder.PrependInt32(value)
        return builder.EndVector()

    def tables(offsets):
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    def tensor(shape):
        shape = ints(shape)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(0, shape, 0)
        builder.PrependInt8Slot(1, 3, 0)   # UINT8
        return builder.EndObject()

    tensors = tables([tensor([1, 2, 2, 3]), tensor([1, 5])])
    inputs, outputs = ints([0]), ints([1])
    builder.StartObject(3)
    builder.PrependUOffsetTRelativeSlot(0, tensors, 0)
    builder.PrependUOffsetTRelativeSlot(1, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(2, outputs, 0)
    subgraphs = tables([builder.EndObject()])
    builder.StartObject(3)
    builder.PrependUint64Slot(1, buffer_offset, 0)   # Buffer.offset: data stored after the FlatBuffer
    builder.PrependUint64Slot(2, 16 if buffer_offset else 0, 0)
    buffers = tables([builder.EndObject()])
    builder.StartObject(model_fields)
    builder.PrependUint32Slot(schema.Model.version, 3, 0)
    builder.PrependUOffsetTRelativeSlot(schema.Model.subgraphs, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(schema.Model.buffers, buffers, 0)
    if model_fields > 8:
        builder.PrependUint32Slot(model_fields - 1, 7, 0)   # a field from a schema newer than ours
    builder.Finish(builder.EndObject(), file_identifier=schema.MODEL_IDENTIFIER)
    return bytes(builder.Output())


def test_synthetic_model_round_trip():
    info = read_model_info(write_metadata(synthetic_model(), FLOWERS, mean=[0], std=[1], name="tiny"))
    assert (info.labels, info.input.shape, info.output.shape, info.input_size) == (FLOWERS, (1, 2, 2, 3), (1, 5),
                                                                                  (2, 2))


def test_refuses_models_it_would_break():
    with pytest.raises(UnsupportedModelError, match="over 2 GB"):
        write_metadata(synthetic_model(buffer_offset=4096), FLOWERS, mean=[0], std=[1], name="big")
    with pytest.raises(UnsupportedModelError, match="newer"):
        write_metadata(synthetic_model(model_fields=12), FLOWERS, mean=[0], std=[1], name="new")


def test_a_damaged_archive_is_replaced_not_appended_to(reference_model, recwarn):
    """Found by the fuzzer: an archive whose entry points past the end cannot be cut off; the new
    labels go into a fresh archive after it, not into the damaged one (zipfile warned of duplicates)."""
    written = bytearray(write_metadata(reference_model.read_bytes(), FLOWERS, mean=[0], std=[255], name="one"))
    entry = written.rindex(b"PK\x01\x02")
    written[entry + 42:entry + 46] = (len(written) + 100).to_bytes(4, "little")   # its local header offset
    rewritten = write_metadata(bytes(written), list("abcde"), mean=[0], std=[255], name="two")
    assert read_model_info(rewritten).labels == tuple("abcde")
    assert not recwarn.list

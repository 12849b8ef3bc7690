"""Our reader on real models: Model Maker's reference, bare models, and each kind of broken file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.metadata import (LabelsMismatchError, MalformedMetadataError, MetadataError, NoMetadataError,
                             NotTFLiteError, TruncatedModelError, read_model_info)
from tests.metadata.conftest import FLOWERS, quantization_normalization


def test_reads_model_makers_metadata_as_tflite_support_prints_it(model_maker_model):
    expected = json.loads(model_maker_model.with_suffix(".metadata.json").read_text())
    info = read_model_info(model_maker_model)
    image, = expected["subgraph_metadata"][0]["input_tensor_metadata"]
    normalization = image["process_units"][0]["options"]
    assert info.has_metadata
    assert info.labels == FLOWERS
    assert (info.mean, info.std) == (tuple(normalization["mean"]), tuple(normalization["std"]))
    assert (info.name, info.description, info.version, info.author, info.license, info.min_parser_version) == (
        expected["name"], expected["description"], expected["version"], expected["author"], expected["license"],
        expected["min_parser_version"])


def test_tensor_facts_match_the_interpreter(reference_model):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(reference_model))
    info = read_model_info(reference_model.read_bytes())
    for ours, theirs in ((info.input, interpreter.get_input_details()[0]),
                         (info.output, interpreter.get_output_details()[0])):
        assert ours.name == theirs["name"]
        assert ours.shape == tuple(theirs["shape"])
        assert np.dtype(ours.dtype) == theirs["dtype"]
        assert (ours.scale, ours.zero_point) == pytest.approx(theirs["quantization"])
    assert info.input_size == (224, 224)


def test_bare_model_needs_a_labels_file(bare_model, tmp_path):
    with pytest.raises(NoMetadataError):
        read_model_info(bare_model)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(FLOWERS) + "\n\n")
    info = read_model_info(bare_model, labels_file=labels)
    assert not info.has_metadata and info.name is None
    assert info.labels == FLOWERS
    # without metadata the input's quantization is the normalization: raw pixels in
    mean, std = quantization_normalization(bare_model)
    assert info.mean == (mean,) and info.std == pytest.approx((std,))


def test_labels_file_overrides_embedded_labels(reference_model, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne")
    assert read_model_info(reference_model, labels_file=labels).labels == tuple("abcde")


def test_label_count_must_match_the_output(reference_model, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\nroses\n")
    with pytest.raises(LabelsMismatchError, match="2 labels.*5 scores"):
        read_model_info(reference_model, labels_file=labels)


def test_not_tflite(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(NotTFLiteError, match="TFL3"):
        read_model_info(photo)
    with pytest.raises(NotTFLiteError):
        read_model_info(b"")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated(reference_model, keep):
    data = reference_model.read_bytes()
    with pytest.raises(TruncatedModelError):
        read_model_info(data[:int(len(data) * keep)])


def test_truncated_in_the_labels_archive(reference_model):
    with pytest.raises(TruncatedModelError):
        read_model_info(reference_model.read_bytes()[:-10])


def test_metadata_naming_a_file_the_archive_lacks(reference_model):
    data = reference_model.read_bytes()
    assert data.index(b"labels.txt") < data.index(b"PK\x03\x04")   # the first is in the metadata
    with pytest.raises(MalformedMetadataError, match="labelz.txt.*archive lacks it"):
        read_model_info(data.replace(b"labels.txt", b"labelz.txt", 1))
    with pytest.raises(MalformedMetadataError, match="no archive"):
        read_model_info(data[:data.index(b"PK\x03\x04")])


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MetadataError, match="cannot read model"):
        read_model_info(tmp_path / "nope.tflite")



def test_reads_what_tflite_supports_metadata_writer_wrote(bare_model, tflite_support, tmp_path):
    """tflite-support's metadata_writers: the writer MediaPipe Model Maker's is a fork of."""
    labels, out = tmp_path / "labels.txt", tmp_path / "theirs.tflite"
    labels.write_text("\n".join(FLOWERS))
    tflite_support("label", bare_model, labels, out)
    info = read_model_info(out)
    assert (info.name, info.labels, info.mean, info.std) == ("ImageClassifier", FLOWERS, (127.5,), (127.5,))
    assert info.has_metadata and info.min_parser_version == "1.0.0"


def test_labels_keep_their_line_numbers(reference_model, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xef\xbb\xbfdaisy\r\n\r\nroses\nsunflowers\ntulips\n\n \n")
    assert read_model_info(reference_model, labels_file=labels).labels == ("daisy", "", "roses", "sunflowers",
                                                                           "tulips")
